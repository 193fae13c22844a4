//! Fault injection for crash tests: [`FaultyDevice`] wraps any [`BlockDevice`] and a shared
//! [`PowerRail`] decides when power goes.
//!
//! Model: writes land in a volatile cache (`pending`) until `flush`, which applies them to the wrapped
//! device in order and flushes it. When the rail cuts power, every later operation on every device of
//! that rail fails with [`BlockError::PowerCut`], and each device settles its cache as chosen by
//! [`Unflushed`]: `Lost` drops all unflushed writes; `Torn` keeps every byte written before the cut,
//! including the prefix of the write that was in flight (the medium got it, the flush never came).
//! Devices also settle their cache when dropped, so a test "reboots" by dropping the whole stack and
//! reopening the medium (a [`super::MemDevice`] clone or the file).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{BlockDevice, check_range};
use crate::error::BlockError;

/// When the power goes. Counts are over all devices sharing the rail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CutPoint {
    /// Never (a rail that only counts).
    #[default]
    Never,
    /// After this many bytes were written: the write that crosses the limit is torn at it.
    AfterBytes(u64),
    /// After this many write calls completed.
    AfterWrites(u64),
    /// After this many flush calls completed.
    AfterFlushes(u64),
    /// After this many writes and flushes together completed.
    AfterOps(u64),
}

/// What happens to writes that were not flushed when the power went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unflushed {
    /// They are lost (a volatile write cache).
    #[default]
    Lost,
    /// Everything written before the cut reached the medium, the in-flight write up to the cut byte.
    Torn,
}

/// What a rail has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RailCounters {
    /// Bytes accepted by writes.
    pub bytes: u64,
    /// Write calls accepted (a torn write counts).
    pub writes: u64,
    /// Flush calls completed.
    pub flushes: u64,
    /// Whether the power is cut.
    pub cut: bool,
}

#[derive(Debug, Default)]
struct RailState {
    point: CutPoint,
    unflushed: Unflushed,
    seen: RailCounters,
}

/// The power supply shared by all [`FaultyDevice`]s of one simulated machine. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct PowerRail {
    state: Arc<Mutex<RailState>>,
}

/// How much of a write the rail lets through.
enum Admit {
    All,
    Prefix(usize),
    Nothing,
}

impl PowerRail {
    /// A rail that never cuts; use it to count the writes of an operation.
    pub fn always_on() -> Self {
        Self::default()
    }

    /// A rail that cuts at `point`, settling caches as `unflushed` says.
    pub fn cut_at(point: CutPoint, unflushed: Unflushed) -> Self {
        let state = RailState {
            point,
            unflushed,
            seen: RailCounters::default(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> RailCounters {
        self.lock().seen
    }

    /// Whether the power is cut.
    pub fn is_cut(&self) -> bool {
        self.lock().seen.cut
    }

    /// Arms a cut `ops` writes and flushes from now (a fault that strikes later, on a running machine).
    pub fn cut_after_more_ops(&self, ops: u64) {
        let mut state = self.lock();
        let seen = state.seen.writes + state.seen.flushes;
        state.point = CutPoint::AfterOps(seen + ops);
    }

    /// Cut the power now.
    pub fn cut_now(&self) {
        self.lock().seen.cut = true;
    }

    fn unflushed(&self) -> Unflushed {
        self.lock().unflushed
    }

    fn lock(&self) -> MutexGuard<'_, RailState> {
        // Counters are plain integers: a poisoned lock still holds consistent values.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Cut if a limit is reached; true when the power is (now) off.
    fn check(state: &mut RailState) -> bool {
        let s = state.seen;
        let reached = match state.point {
            CutPoint::Never => false,
            CutPoint::AfterBytes(n) => s.bytes >= n,
            CutPoint::AfterWrites(n) => s.writes >= n,
            CutPoint::AfterFlushes(n) => s.flushes >= n,
            CutPoint::AfterOps(n) => s.writes + s.flushes >= n,
        };
        state.seen.cut |= reached;
        state.seen.cut
    }

    fn admit_write(&self, len: usize) -> Admit {
        let mut state = self.lock();
        if Self::check(&mut state) {
            return Admit::Nothing;
        }
        state.seen.writes += 1;
        if let CutPoint::AfterBytes(n) = state.point {
            let room = n - state.seen.bytes;
            if (len as u64) > room {
                state.seen.bytes = n;
                state.seen.cut = true;
                return Admit::Prefix(room as usize);
            }
        }
        state.seen.bytes += len as u64;
        Admit::All
    }

    fn admit_flush(&self) -> bool {
        let mut state = self.lock();
        if Self::check(&mut state) {
            return false;
        }
        state.seen.flushes += 1;
        true
    }
}

/// A [`BlockDevice`] with injected faults: power cuts (through its [`PowerRail`]), bit flips on read,
/// EIO on reads or writes, ENOSPC past an offset.
#[derive(Debug)]
pub struct FaultyDevice<D: BlockDevice> {
    inner: D,
    rail: PowerRail,
    pending: Vec<(u64, Vec<u8>)>,
    flips: Vec<(u64, u8)>,
    reads: u64,
    writes: u64,
    eio_reads_after: Option<u64>,
    eio_writes_after: Option<u64>,
    no_space_beyond: Option<u64>,
}

impl<D: BlockDevice> FaultyDevice<D> {
    /// Wrap `inner`, powered by `rail`.
    pub fn new(inner: D, rail: PowerRail) -> Self {
        Self {
            inner,
            rail,
            pending: Vec::new(),
            flips: Vec::new(),
            reads: 0,
            writes: 0,
            eio_reads_after: None,
            eio_writes_after: None,
            no_space_beyond: None,
        }
    }

    /// Flip bit `bit` (0..8) of the byte at `offset` in every read that covers it (the medium is intact).
    pub fn flip_bit(mut self, offset: u64, bit: u8) -> Self {
        self.flips.push((offset, bit % 8));
        self
    }

    /// Reads after the first `n` fail with EIO.
    pub fn eio_on_reads_after(mut self, n: u64) -> Self {
        self.eio_reads_after = Some(n);
        self
    }

    /// Writes after the first `n` fail with EIO (nothing of them is written).
    pub fn eio_on_writes_after(mut self, n: u64) -> Self {
        self.eio_writes_after = Some(n);
        self
    }

    /// Writes that reach past `offset` fail with ENOSPC.
    pub fn no_space_beyond(mut self, offset: u64) -> Self {
        self.no_space_beyond = Some(offset);
        self
    }

    /// The wrapped device (unflushed writes are not visible in it).
    pub fn inner(&self) -> &D {
        &self.inner
    }

    fn os_error(&self, op: &'static str, offset: u64, errno: rustix::io::Errno) -> BlockError {
        let source = std::io::Error::from(errno);
        BlockError::Io {
            backend: "faulty",
            path: self.inner.location().to_path_buf(),
            op,
            offset,
            source,
        }
    }

    fn power_cut(&mut self, op: &'static str) -> BlockError {
        self.settle();
        BlockError::PowerCut {
            backend: self.inner.backend(),
            path: self.inner.location().to_path_buf(),
            op,
        }
    }

    /// Apply or drop the cache according to the rail's state.
    fn settle(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if self.rail.is_cut() && self.rail.unflushed() == Unflushed::Lost {
            return;
        }
        for (offset, data) in pending {
            if let Err(error) = self.inner.write_at(offset, &data) {
                tracing::warn!(%error, offset, "faulty device: settling a cached write failed");
            }
        }
    }
}

impl<D: BlockDevice> BlockDevice for FaultyDevice<D> {
    fn backend(&self) -> &'static str {
        "faulty"
    }
    fn location(&self) -> &Path {
        self.inner.location()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        if self.rail.is_cut() {
            return Err(self.power_cut("read"));
        }
        self.reads += 1;
        if self.eio_reads_after.is_some_and(|n| self.reads > n) {
            return Err(self.os_error("read", offset, rustix::io::Errno::IO));
        }
        self.inner.read_at(offset, buf)?;
        let end = offset + buf.len() as u64;
        for (start, data) in &self.pending {
            let (lo, hi) = (offset.max(*start), end.min(start + data.len() as u64));
            if lo < hi {
                let (src, dst) = ((lo - start) as usize, (lo - offset) as usize);
                let len = (hi - lo) as usize;
                buf[dst..dst + len].copy_from_slice(&data[src..src + len]);
            }
        }
        for &(at, bit) in &self.flips {
            if (offset..end).contains(&at) {
                buf[(at - offset) as usize] ^= 1 << bit;
            }
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        check_range(self, offset, data.len())?;
        if self
            .no_space_beyond
            .is_some_and(|limit| offset + data.len() as u64 > limit)
        {
            return Err(self.os_error("write", offset, rustix::io::Errno::NOSPC));
        }
        self.writes += 1;
        if self.eio_writes_after.is_some_and(|n| self.writes > n) {
            return Err(self.os_error("write", offset, rustix::io::Errno::IO));
        }
        match self.rail.admit_write(data.len()) {
            Admit::All => {
                self.pending.push((offset, data.to_vec()));
                Ok(())
            }
            Admit::Prefix(len) => {
                self.pending.push((offset, data[..len].to_vec()));
                Err(self.power_cut("write"))
            }
            Admit::Nothing => Err(self.power_cut("write")),
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if !self.rail.admit_flush() {
            return Err(self.power_cut("flush"));
        }
        for (offset, data) in std::mem::take(&mut self.pending) {
            self.inner.write_at(offset, &data)?;
        }
        self.inner.flush()
    }
}

impl<D: BlockDevice> Drop for FaultyDevice<D> {
    fn drop(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::MemDevice;

    fn medium() -> MemDevice {
        MemDevice::from_bytes("m", vec![b'.'; 16])
    }

    fn after_cut(point: CutPoint, unflushed: Unflushed) -> Vec<u8> {
        let mem = medium();
        let mut dev = FaultyDevice::new(mem.clone(), PowerRail::cut_at(point, unflushed));
        let _ = dev.write_at(0, b"aaaa").and_then(|()| dev.flush());
        let _ = dev.write_at(4, b"bbbb").and_then(|()| dev.write_at(8, b"cccc"));
        assert!(matches!(dev.flush(), Err(BlockError::PowerCut { .. })) || point == CutPoint::Never);
        drop(dev);
        mem.snapshot()
    }

    #[test]
    fn cuts_lose_or_tear_unflushed_writes() {
        assert_eq!(
            after_cut(CutPoint::AfterBytes(6), Unflushed::Lost),
            b"aaaa............"
        );
        assert_eq!(
            after_cut(CutPoint::AfterBytes(6), Unflushed::Torn),
            b"aaaabb.........."
        );
        assert_eq!(
            after_cut(CutPoint::AfterWrites(2), Unflushed::Torn),
            b"aaaabbbb........"
        );
        assert_eq!(
            after_cut(CutPoint::AfterFlushes(1), Unflushed::Lost),
            b"aaaa............"
        );
        assert_eq!(
            after_cut(CutPoint::AfterOps(0), Unflushed::Torn),
            b"................"
        );
        assert_eq!(after_cut(CutPoint::Never, Unflushed::Lost), b"aaaabbbbcccc....");
    }

    #[test]
    fn reads_see_cache_and_flipped_bits_and_errors() {
        let mut dev = FaultyDevice::new(medium(), PowerRail::always_on())
            .flip_bit(1, 0)
            .eio_on_reads_after(1);
        dev.write_at(0, b"ab").unwrap();
        let mut buf = [0u8; 3];
        dev.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"ac.");
        let err = dev.read_at(0, &mut buf).unwrap_err();
        assert!(
            matches!(err, BlockError::Io { op: "read", ref source, .. } if source.raw_os_error() == Some(5))
        );
    }

    #[test]
    fn write_errors_are_eio_or_enospc() {
        let mut dev = FaultyDevice::new(medium(), PowerRail::always_on())
            .no_space_beyond(8)
            .eio_on_writes_after(1);
        let err = dev.write_at(6, b"xyz").unwrap_err();
        assert!(matches!(err, BlockError::Io { ref source, .. } if source.raw_os_error() == Some(28)));
        dev.write_at(0, b"x").unwrap();
        assert!(dev.write_at(1, b"y").is_err());
    }

    #[test]
    fn a_cut_on_one_device_stops_the_other() {
        let rail = PowerRail::cut_at(CutPoint::AfterWrites(1), Unflushed::Lost);
        let (m1, m2) = (medium(), medium());
        let mut d1 = FaultyDevice::new(m1.clone(), rail.clone());
        let mut d2 = FaultyDevice::new(m2.clone(), rail.clone());
        d2.write_at(0, b"z").unwrap();
        assert!(d1.write_at(0, b"y").is_err());
        assert!(d2.flush().is_err());
        drop((d1, d2));
        assert_eq!(m2.snapshot()[0], b'.');
        assert_eq!(
            rail.counters(),
            RailCounters {
                bytes: 1,
                writes: 1,
                flushes: 0,
                cut: true
            }
        );
    }
}
