//! The FFI edge of the kernel backend: three system calls std and socket2 do not wrap.
//!
//! `unsafe` is allowed in this module only (the workspace denies it elsewhere) because
//! `setns(2)`, the `TUNSETIFF` ioctl and `poll(2)` have no safe wrapper in std or socket2.
//! Each call passes a file descriptor the caller owns (borrowed for the call's duration)
//! and, for the ioctl, a pointer to a properly sized, zero-initialised `struct ifreq` on the
//! stack; nothing outlives the call.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Moves the calling thread into the network namespace `ns` (an open `/run/netns/NAME`).
/// Only this thread moves; threads and processes it starts afterwards inherit it.
pub fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: `ns` is an open file for the duration of the call; setns only reads the fd.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `TUNSETIFF` from include/uapi/linux/if_tun.h: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Opens `/dev/net/tun` and attaches a new layer-3 TUN device called `name` without packet
/// information headers (`IFF_TUN | IFF_NO_PI`): every read is one IP packet the stack sent,
/// every write one IP packet it receives. The device lives in the calling thread's network
/// namespace (tun_chr_open takes `current`'s namespace) and disappears when the file closes.
pub fn open_tun(name: &str) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: the fd is open, and `req` is a valid, writable ifreq for the whole call, which is
    // the argument TUNSETIFF expects.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            TUNSETIFF as _,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Waits until `fd` is readable or `timeout` passes; `Ok(true)` when readable.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up so a sub-millisecond remainder still waits instead of spinning.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: `pfd` is a valid pollfd array of length 1 for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
