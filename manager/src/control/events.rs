//! `Events`: Docker's event stream, served by every manager from the events it derived from
//! its own store (see [`crate::events`]); nothing is forwarded to the leader.

use std::pin::Pin;

use futures::Stream;
use mini_proto::v1::{Event, EventsRequest};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::ControlError;
use crate::events::{Filters, now_ns};
use crate::manager::Manager;

/// A stream of events.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

/// The kept events since `since_ns` that pass the filters, then the live ones, until
/// `until_ns` (if set) or until the client goes away.
pub fn events(manager: &Manager, request: EventsRequest) -> Result<EventStream, ControlError> {
    let filters =
        Filters::parse(&request.filters).map_err(|e| ControlError::Invalid(e.to_string()))?;
    if request.until_ns > 0 && request.since_ns > request.until_ns {
        return Err(ControlError::Invalid(
            "--since is after --until: no event can be in between".into(),
        ));
    }
    let (past, mut live) = manager.events().subscribe(request.since_ns);
    let until = request.until_ns;
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let after_until = |e: &Event| until > 0 && e.time_nano > until;
        for event in past {
            if after_until(&event) {
                return;
            }
            if filters.matches(&event) && tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        let left = if until > 0 {
            let left = until - now_ns();
            if left <= 0 {
                return;
            }
            std::time::Duration::from_nanos(left as u64)
        } else {
            // Following with no end.
            std::time::Duration::from_secs(100 * 365 * 24 * 3600)
        };
        let deadline = tokio::time::sleep(left);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = &mut deadline => return,
                next = live.recv() => match next {
                    Ok(event) if after_until(&event) => return,
                    Ok(event) => {
                        if filters.matches(&event) && tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "{n} events were dropped: this client read them too slowly"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
