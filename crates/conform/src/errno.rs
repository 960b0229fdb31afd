//! errno names as scripts spell them (`ECONNRESET`), with Linux's numbers
//! (include/uapi/asm-generic/errno-base.h and errno.h) and strerror texts.

/// `(name, Linux number, strerror text)` for the errnos socket calls on close paths return.
pub const ERRNOS: &[(&str, i32, &str)] = &[
    ("EPERM", 1, "Operation not permitted"),
    ("ENOENT", 2, "No such file or directory"),
    ("EINTR", 4, "Interrupted system call"),
    ("EBADF", 9, "Bad file descriptor"),
    ("EAGAIN", 11, "Resource temporarily unavailable"),
    ("ENOMEM", 12, "Cannot allocate memory"),
    ("EACCES", 13, "Permission denied"),
    ("EFAULT", 14, "Bad address"),
    ("EINVAL", 22, "Invalid argument"),
    ("EMFILE", 24, "Too many open files"),
    ("EPIPE", 32, "Broken pipe"),
    ("ENOTSOCK", 88, "Socket operation on non-socket"),
    ("EOPNOTSUPP", 95, "Operation not supported"),
    ("EADDRINUSE", 98, "Address already in use"),
    ("EADDRNOTAVAIL", 99, "Cannot assign requested address"),
    ("ENETUNREACH", 101, "Network is unreachable"),
    ("ECONNABORTED", 103, "Software caused connection abort"),
    ("ECONNRESET", 104, "Connection reset by peer"),
    ("EISCONN", 106, "Transport endpoint is already connected"),
    ("ENOTCONN", 107, "Transport endpoint is not connected"),
    ("ETIMEDOUT", 110, "Connection timed out"),
    ("ECONNREFUSED", 111, "Connection refused"),
    ("EHOSTUNREACH", 113, "No route to host"),
    ("EALREADY", 114, "Operation already in progress"),
    ("EINPROGRESS", 115, "Operation now in progress"),
];

/// The name of a Linux errno number (`104` → `ECONNRESET`), or `errno N` when unknown.
pub fn name(number: i32) -> String {
    ERRNOS
        .iter()
        .find(|e| e.1 == number)
        .map(|e| e.0.to_string())
        .unwrap_or_else(|| format!("errno {number}"))
}

/// Whether a name is one this table knows (`EWOULDBLOCK` is accepted as `EAGAIN`).
pub fn canonical(name: &str) -> &str {
    if name == "EWOULDBLOCK" {
        "EAGAIN"
    } else {
        name
    }
}

/// The strerror text of a name, if known.
pub fn describe(name: &str) -> Option<&'static str> {
    let name = canonical(name);
    ERRNOS.iter().find(|e| e.0 == name).map(|e| e.2)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn numbers_match_the_platform() {
        for &(name, number, _) in super::ERRNOS {
            let os = std::io::Error::from_raw_os_error(number).to_string();
            // std prints "<strerror> (os error N)"; the table's text must be that strerror.
            assert!(
                os.starts_with(super::describe(name).unwrap()),
                "{name} {number}: {os}"
            );
        }
    }
}
