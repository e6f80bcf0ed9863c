//! `recvmmsg(2)` and `sendmmsg(2)`: up to [`BATCH`] datagrams per system call each way.
//!
//! Under load the kernel queues several queries between two reads; taking them in one
//! call, and sending the answers the fast path made for them in one more, halves and more
//! the system calls per query. dnsgate's `unsafe` code is here (bar one `malloc_trim` and one `madvise`), each block next to
//! the buffers it points into, which live as long as the [`Inbox`] or [`Outbox`] and are
//! re-pointed before every call (so moving one cannot leave a stale pointer behind).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per call.
pub(super) const BATCH: usize = 32;
/// Room per received datagram; longer ones are cut (and flagged, see [`Inbox::get`]).
pub(super) const DATAGRAM: usize = 4096;

/// Buffers for one batch of received datagrams.
pub(super) struct Inbox {
    bufs: Vec<[u8; DATAGRAM]>,
    lens: [usize; BATCH],
    truncated: [bool; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    count: usize,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
}

/// Replies waiting to be sent in one batch.
pub(super) struct Outbox {
    /// Reply buffers (reused) and destinations; the first `queued` are to go.
    replies: Vec<(Vec<u8>, SocketAddr)>,
    queued: usize,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("count", &self.count).finish()
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &self.queued)
            .finish()
    }
}

// SAFETY: the raw pointers in the C structs only ever point into the same value's own
// buffers, and are set afresh before each system call; nothing is shared between threads.
unsafe impl Send for Inbox {}
// SAFETY: as for `Inbox`.
unsafe impl Send for Outbox {}

/// `n` zeroed C structs.
fn zeroed_vec<T: Clone>(n: usize) -> Vec<T> {
    // SAFETY: only used for iovec, sockaddr_storage and mmsghdr: plain C structs for
    // which all zero bytes is a valid (empty) value.
    vec![unsafe { zeroed() }; n]
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            bufs: vec![[0; DATAGRAM]; BATCH],
            lens: [0; BATCH],
            truncated: [false; BATCH],
            peers: [None; BATCH],
            count: 0,
            iov: zeroed_vec(BATCH),
            names: zeroed_vec(BATCH),
            hdrs: zeroed_vec(BATCH),
        }
    }
}

impl Inbox {
    /// Reads up to [`BATCH`] datagrams without blocking; `Err(WouldBlock)` if none wait.
    pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // One base pointer per vector, so that pointing header i at name i and iovec i
        // never re-borrows a vector another header already points into.
        let (bufs, iov) = (self.bufs.as_mut_ptr(), self.iov.as_mut_ptr());
        let (names, hdrs) = (self.names.as_mut_ptr(), self.hdrs.as_mut_ptr());
        for i in 0..BATCH {
            // SAFETY: i < BATCH, the length of every vector here, so each `add(i)` is in
            // bounds; all four vectors are distinct allocations owned by `self`.
            unsafe {
                iov.add(i).write(libc::iovec {
                    iov_base: (*bufs.add(i)).as_mut_ptr().cast(),
                    iov_len: DATAGRAM,
                });
                point(
                    hdrs.add(i),
                    names.add(i),
                    iov.add(i),
                    size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                );
            }
        }
        // SAFETY: every header points at a name and an iovec of this inbox, and every
        // iovec at a buffer of DATAGRAM bytes of this inbox; all outlive the call, and the
        // kernel writes no more than the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs,
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        for i in 0..self.count {
            let h = &self.hdrs[i];
            self.lens[i] = (h.msg_len as usize).min(DATAGRAM);
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.peers[i] = from_storage(&self.names[i]);
        }
        Ok(self.count)
    }

    /// The `i`th datagram of the last [`Inbox::recv`]: bytes, sender, and whether it was
    /// longer than [`DATAGRAM`] and cut.
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, bool)> {
        if i >= self.count {
            return None;
        }
        Some((
            &self.bufs[i][..self.lens[i]],
            self.peers[i]?,
            self.truncated[i],
        ))
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            replies: Vec::with_capacity(BATCH),
            queued: 0,
            iov: zeroed_vec(BATCH),
            names: zeroed_vec(BATCH),
            hdrs: zeroed_vec(BATCH),
        }
    }
}

impl Outbox {
    /// The next reply buffer to fill; [`Outbox::commit`] queues it.
    pub(super) fn next_buffer(&mut self) -> &mut Vec<u8> {
        let i = self.queued;
        if self.replies.len() == i {
            self.replies
                .push((Vec::with_capacity(512), SocketAddr::from(([0, 0, 0, 0], 0))));
        }
        &mut self.replies[i].0
    }

    /// Queues the buffer last handed out by [`Outbox::next_buffer`] for `dst`.
    pub(super) fn commit(&mut self, dst: SocketAddr) {
        self.replies[self.queued].1 = dst;
        self.queued += 1;
    }

    /// Replies waiting.
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// Sends the queued replies (up to [`BATCH`] per call) without blocking; returns how
    /// many went. The rest stay queued.
    pub(super) fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.queued.min(BATCH);
        if n == 0 {
            return Ok(0);
        }
        let (iov, names, hdrs) = (
            self.iov.as_mut_ptr(),
            self.names.as_mut_ptr(),
            self.hdrs.as_mut_ptr(),
        );
        for (i, (buf, dst)) in self.replies[..n].iter().enumerate() {
            // SAFETY: i < n <= BATCH, the length of the three vectors; they are distinct
            // allocations owned by `self`, and `replies` is a fourth.
            unsafe {
                let namelen = to_storage(*dst, &mut *names.add(i));
                iov.add(i).write(libc::iovec {
                    iov_base: buf.as_ptr().cast_mut().cast(),
                    iov_len: buf.len(),
                });
                point(hdrs.add(i), names.add(i), iov.add(i), namelen);
            }
        }
        // SAFETY: the first `n` headers point at names and iovecs of this outbox, the
        // iovecs at reply buffers not touched until the call returns; the kernel only
        // reads them.
        let sent = unsafe { libc::sendmmsg(fd, hdrs, n as libc::c_uint, libc::MSG_DONTWAIT) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        self.discard(sent as usize);
        Ok(sent as usize)
    }

    /// Drops the first `n` queued replies (sent, or undeliverable: the client retries).
    pub(super) fn discard(&mut self, n: usize) {
        let n = n.min(self.queued);
        // Keep the buffers for reuse; the unsent ones move to the front.
        self.replies[..self.queued].rotate_left(n);
        self.queued -= n;
    }
}

/// Points a header at one name (of `namelen` bytes) and one iovec.
///
/// # Safety
/// All three pointers must be valid for writes (`h`) or for the kernel call that follows.
unsafe fn point(
    h: *mut libc::mmsghdr,
    name: *mut libc::sockaddr_storage,
    iov: *mut libc::iovec,
    namelen: libc::socklen_t,
) {
    // SAFETY: the caller's promise; an all-zero mmsghdr is valid.
    unsafe {
        h.write(zeroed());
        (*h).msg_hdr.msg_name = name.cast();
        (*h).msg_hdr.msg_namelen = namelen;
        (*h).msg_hdr.msg_iov = iov;
        (*h).msg_hdr.msg_iovlen = 1;
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // and aligned enough for.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*std::ptr::from_ref(s).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *std::ptr::from_mut(s).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            sin.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *std::ptr::from_mut(s).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn addresses_round_trip() {
        for a in ["192.0.2.1:53", "[2001:db8::1]:5353", "[fe80::1%3]:1"] {
            let addr: SocketAddr = a.parse().unwrap();
            // SAFETY: zeroed storage is valid.
            let mut s: libc::sockaddr_storage = unsafe { zeroed() };
            to_storage(addr, &mut s);
            assert_eq!(from_storage(&s), Some(addr));
        }
    }

    #[test]
    fn a_batch_goes_in_and_out() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (mut inbox, mut outbox) = (Inbox::default(), Outbox::default());
        assert_eq!(
            inbox.recv(server.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let to = server.local_addr().unwrap();
        for i in 0..40u8 {
            client.send_to(&[i; 3], to).unwrap();
        }
        client.send_to(&[9; DATAGRAM + 10], to).unwrap();
        let (mut got, mut cut) = (0, 0);
        while got + cut < 41 {
            let n = inbox.recv(server.as_raw_fd()).unwrap();
            assert!((1..=BATCH).contains(&n));
            for i in 0..n {
                let (bytes, from, truncated) = inbox.get(i).unwrap();
                assert_eq!(from, client.local_addr().unwrap());
                if truncated {
                    cut += 1;
                    assert_eq!(bytes.len(), DATAGRAM);
                    continue;
                }
                got += 1;
                let out = outbox.next_buffer();
                out.clear();
                out.extend_from_slice(bytes);
                out.push(0xff);
                outbox.commit(from);
            }
        }
        assert_eq!((got, cut), (40, 1));
        assert_eq!(outbox.queued(), 40);
        let mut sent = 0;
        while outbox.queued() > 0 {
            sent += outbox.send(server.as_raw_fd()).unwrap();
        }
        assert_eq!(sent, 40);
        for i in 0..40u8 {
            let mut buf = [0u8; 16];
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i, i, i, 0xff]);
        }
    }
}
