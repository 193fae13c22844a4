//! Network: `lo` up, and `eth0` with the static address QEMU's user-mode network expects
//! (10.0.2.15/24; the host forwards appear on 10.0.2.100). Done with the classic `SIOCSIF*` ioctls,
//! which have no safe wrapper in rustix.
#![allow(unsafe_code)]

use std::net::Ipv4Addr;

/// Guest address.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// Netmask.
pub const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    req
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it as sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

struct Socket(libc::c_int);

impl Socket {
    fn new() -> Result<Self, String> {
        // SAFETY: plain socket(2) call; the fd is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        Ok(Self(fd))
    }

    fn ioctl(&self, request: libc::c_ulong, req: &mut libc::ifreq, what: &str) -> Result<(), String> {
        // SAFETY: `req` is a valid ifreq for the SIOC[GS]IF* requests used here.
        let rc = unsafe { libc::ioctl(self.0, request as _, req as *mut libc::ifreq) };
        if rc < 0 {
            return Err(format!("{what}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn set_up(&self, name: &str) -> Result<(), String> {
        let mut req = ifreq(name);
        self.ioctl(libc::SIOCGIFFLAGS, &mut req, &format!("{name} flags"))?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        self.ioctl(libc::SIOCSIFFLAGS, &mut req, &format!("{name} up"))
    }

    fn set_addr(&self, name: &str, request: libc::c_ulong, addr: Ipv4Addr) -> Result<(), String> {
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_addr = sockaddr(addr);
        self.ioctl(request, &mut req, &format!("{name} {addr}"))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

/// Bring up `lo` and `eth0` (waiting up to 5 s for `eth0` to appear).
pub fn up() -> Result<(), String> {
    let s = Socket::new()?;
    s.set_up("lo")?;
    let start = std::time::Instant::now();
    loop {
        match s.set_addr("eth0", libc::SIOCSIFADDR, ADDRESS) {
            Ok(()) => break,
            Err(e) if start.elapsed().as_secs() >= 5 => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    s.set_addr("eth0", libc::SIOCSIFNETMASK, NETMASK)?;
    s.set_up("eth0")
}
