//! A web service for the routing-mesh tests and benchmarks: tasks that answer HTTP with their
//! hostname, and the request that asks them.

/// `service create` arguments (image and command) of a task answering `GET /` on port 80 with
/// its hostname (busybox httpd on a tmpfs private to the task's mount namespace).
pub const HOSTNAME_SERVER: &[&str] = &[
    "host",
    "sh",
    "-c",
    "mount -t tmpfs web /mnt && hostname > /mnt/index.html && exec busybox httpd -f -p 80 -h /mnt",
];

/// A shell command that GETs `/` from `addr port` and prints the body's last line (busybox
/// `nc`: `wget` is not usable inside tasks).
pub fn http_get(addr: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {addr} {port} | tail -n 1")
}
