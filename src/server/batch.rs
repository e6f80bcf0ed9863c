//! `recvmmsg(2)` and `sendmmsg(2)`: up to [`BATCH`] datagrams per system call each way.
//!
//! Under load the kernel queues several queries between two reads; taking them in one
//! call, and sending the answers the fast path made for them in one more, halves and more
//! the system calls per query. dnsgate's `unsafe` code is here (bar one `malloc_trim` and one `madvise`), each block next to
//! the buffers it points into, which live as long as the [`Inbox`] or [`Outbox`] and are
//! re-pointed before every call (so moving one cannot leave a stale pointer behind).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per call.
pub(super) const BATCH: usize = 32;
/// Room per received datagram; longer ones are cut (and flagged, see [`Inbox::get`]).
pub(super) const DATAGRAM: usize = 4096;

/// Where a datagram arrived (`IP_PKTINFO` / `IPV6_PKTINFO`): the local address the client
/// sent it to, and the interface. A socket bound to a wildcard address must answer from
/// that address (RFC 2181 §4.1), not from whichever one the kernel would route by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Local {
    /// The local address.
    pub(super) addr: IpAddr,
    /// The interface index.
    pub(super) ifindex: u32,
}

/// Ancillary data room per datagram: one `IPV6_PKTINFO` (the larger) needs 40 bytes.
const CONTROL: usize = 64;

/// A control-message buffer, aligned as `cmsghdr` needs.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL]);

/// Buffers for one batch of received datagrams.
pub(super) struct Inbox {
    bufs: Vec<[u8; DATAGRAM]>,
    lens: [usize; BATCH],
    truncated: [bool; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    locals: [Option<Local>; BATCH],
    count: usize,
    /// Ask for each datagram's local address (wildcard sockets only: it costs a little).
    pktinfo: bool,
    control: Vec<Control>,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
}

/// Replies waiting to be sent in one batch.
pub(super) struct Outbox {
    /// Reply buffers (reused), destinations and the local address to send from; the first
    /// `queued` are to go.
    replies: Vec<(Vec<u8>, SocketAddr, Option<Local>)>,
    queued: usize,
    control: Vec<Control>,
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

/// C structs for which all zero bytes is a valid (empty) value.
///
/// # Safety
/// Implement only for plain C structs without references, non-nullable pointers or enums.
unsafe trait Zeroable: Clone {}
// SAFETY: plain C structs of integers and nullable pointers.
unsafe impl Zeroable for libc::iovec {}
// SAFETY: as above.
unsafe impl Zeroable for libc::sockaddr_storage {}
// SAFETY: as above.
unsafe impl Zeroable for libc::mmsghdr {}
// SAFETY: bytes.
unsafe impl Zeroable for Control {}

/// `n` zeroed C structs.
fn zeroed_vec<T: Zeroable>(n: usize) -> Vec<T> {
    // SAFETY: `Zeroable` promises all zero bytes is a valid T.
    vec![unsafe { zeroed() }; n]
}

impl Inbox {
    /// Buffers for a socket; with `pktinfo`, each datagram's local address is read too
    /// (the socket must have [`enable_pktinfo`]).
    pub(super) fn new(pktinfo: bool) -> Self {
        Self {
            bufs: vec![[0; DATAGRAM]; BATCH],
            lens: [0; BATCH],
            truncated: [false; BATCH],
            peers: [None; BATCH],
            locals: [None; BATCH],
            count: 0,
            pktinfo,
            control: zeroed_vec(if pktinfo { BATCH } else { 0 }),
            iov: zeroed_vec(BATCH),
            names: zeroed_vec(BATCH),
            hdrs: zeroed_vec(BATCH),
        }
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new(false)
    }
}

/// Asks the kernel to tell, for every datagram `fd` receives, the local address it was
/// sent to (for an IPv6 socket, IPv4 ones too: a dual-stack `[::]` gets both).
pub(super) fn enable_pktinfo(fd: RawFd, v6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: `on` is a c_int that outlives the call, and its size is passed.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                std::ptr::from_ref(&on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    if v6 {
        set(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
        // IPv4 datagrams on a dual-stack socket: best effort (an IPv6-only one refuses).
        let _ = set(libc::IPPROTO_IP, libc::IP_PKTINFO);
        Ok(())
    } else {
        set(libc::IPPROTO_IP, libc::IP_PKTINFO)
    }
}

impl Inbox {
    /// Reads up to [`BATCH`] datagrams without blocking; `Err(WouldBlock)` if none wait.
    pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // One base pointer per vector, so that pointing header i at name i and iovec i
        // never re-borrows a vector another header already points into.
        let (bufs, iov) = (self.bufs.as_mut_ptr(), self.iov.as_mut_ptr());
        let (names, hdrs) = (self.names.as_mut_ptr(), self.hdrs.as_mut_ptr());
        let control = self.control.as_mut_ptr();
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
                if self.pktinfo {
                    // (`control` has BATCH entries when `pktinfo` is set.)
                    (*hdrs.add(i)).msg_hdr.msg_control = control.add(i).cast();
                    (*hdrs.add(i)).msg_hdr.msg_controllen = CONTROL;
                }
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
            self.locals[i] = if self.pktinfo {
                // SAFETY: the kernel filled this header's control buffer (of this inbox)
                // and set its length; nothing else touched it since.
                unsafe { read_pktinfo(&h.msg_hdr) }
            } else {
                None
            };
        }
        Ok(self.count)
    }

    /// The local address the `i`th datagram was sent to, if the socket reads it.
    pub(super) fn local(&self, i: usize) -> Option<Local> {
        self.locals.get(i).copied().flatten()
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
            control: zeroed_vec(BATCH),
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
            self.replies.push((
                Vec::with_capacity(512),
                SocketAddr::from(([0, 0, 0, 0], 0)),
                None,
            ));
        }
        &mut self.replies[i].0
    }

    /// Queues the buffer last handed out by [`Outbox::next_buffer`] for `dst`, to be sent
    /// from `local` (`None`: the socket's own address).
    pub(super) fn commit(&mut self, dst: SocketAddr, local: Option<Local>) {
        let r = &mut self.replies[self.queued];
        (r.1, r.2) = (dst, local);
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
        let control = self.control.as_mut_ptr();
        for (i, (buf, dst, local)) in self.replies[..n].iter().enumerate() {
            // SAFETY: i < n <= BATCH, the length of the four vectors; they are distinct
            // allocations owned by `self`, and `replies` is a fifth.
            unsafe {
                let namelen = to_storage(*dst, &mut *names.add(i));
                iov.add(i).write(libc::iovec {
                    iov_base: buf.as_ptr().cast_mut().cast(),
                    iov_len: buf.len(),
                });
                point(hdrs.add(i), names.add(i), iov.add(i), namelen);
                if let Some(local) = local {
                    write_pktinfo(&mut (*hdrs.add(i)).msg_hdr, &mut *control.add(i), *local);
                }
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

/// Sends one datagram to `dst` from `local` (`None`: the socket's own address), without
/// blocking.
pub(super) fn send_from(
    fd: RawFd,
    bytes: &[u8],
    dst: SocketAddr,
    local: Option<Local>,
) -> io::Result<usize> {
    // SAFETY: zeroed C structs are valid; every pointer set below points at a local that
    // outlives the call, and the kernel only reads them.
    unsafe {
        let mut name: libc::sockaddr_storage = zeroed();
        let namelen = to_storage(dst, &mut name);
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        let mut hdr: libc::mmsghdr = zeroed();
        point(&mut hdr, &mut name, &mut iov, namelen);
        let mut control: Control = zeroed();
        if let Some(local) = local {
            write_pktinfo(&mut hdr.msg_hdr, &mut control, local);
        }
        let n = libc::sendmsg(fd, &hdr.msg_hdr, libc::MSG_DONTWAIT);
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// The local address in a received header's `IP_PKTINFO` / `IPV6_PKTINFO`, if any.
///
/// # Safety
/// `h.msg_control` must point at `h.msg_controllen` bytes the kernel wrote.
unsafe fn read_pktinfo(h: &libc::msghdr) -> Option<Local> {
    // SAFETY: the caller's promise; CMSG_* walk only within msg_controllen, and each
    // payload is read unaligned at its kernel-given level and type.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let p = data.cast::<libc::in_pktinfo>().read_unaligned();
                    return Some(Local {
                        addr: IpAddr::V4(Ipv4Addr::from(u32::from_be(p.ipi_addr.s_addr))),
                        ifindex: p.ipi_ifindex as u32,
                    });
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let p = data.cast::<libc::in6_pktinfo>().read_unaligned();
                    let addr = Ipv6Addr::from(p.ipi6_addr.s6_addr);
                    return Some(Local {
                        addr: IpAddr::V6(addr),
                        ifindex: p.ipi6_ifindex,
                    });
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
        None
    }
}

/// Points `h`'s control data at `control`, holding the source address `local` to send
/// from (IPv4: `IP_PKTINFO`'s `ipi_spec_dst`, any interface; IPv6: `IPV6_PKTINFO` with
/// the interface the query came in on, which a link-local source needs).
///
/// # Safety
/// `control` must outlive the system call that uses `h`.
unsafe fn write_pktinfo(h: &mut libc::msghdr, control: &mut Control, local: Local) {
    // SAFETY: the caller's promise; `control` is CONTROL bytes, 8-aligned, enough for
    // either header and payload, and zeroed before use.
    unsafe {
        *control = zeroed();
        h.msg_control = std::ptr::from_mut(control).cast();
        let (level, kind, len) = match local.addr {
            IpAddr::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                size_of::<libc::in_pktinfo>(),
            ),
            IpAddr::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                size_of::<libc::in6_pktinfo>(),
            ),
        };
        h.msg_controllen = libc::CMSG_SPACE(len as libc::c_uint) as usize;
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(len as libc::c_uint) as usize;
        let data = libc::CMSG_DATA(c);
        match local.addr {
            IpAddr::V4(a) => data
                .cast::<libc::in_pktinfo>()
                .write_unaligned(libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                }),
            IpAddr::V6(a) => data
                .cast::<libc::in6_pktinfo>()
                .write_unaligned(libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: local.ifindex,
                }),
        }
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
                outbox.commit(from, None);
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
