//! Random-access reads of the source image (`SourceRead`) for `apply`.

use std::io;

/// A source image that `apply` reads at random offsets.
///
/// Implemented for byte slices, `Vec<u8>` and `std::fs::File` (positional reads, no shared cursor).
pub trait SourceRead {
    /// Total size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; fails with `UnexpectedEof` when the range ends past `size()`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl SourceRead for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .filter(|r| r.end <= self.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of source"))?;
        buf.copy_from_slice(&self[range]);
        Ok(())
    }
}

impl SourceRead for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

impl SourceRead for std::fs::File {
    fn size(&self) -> u64 {
        // Seeking to the end also works for block devices, whose metadata length is 0. It moves
        // the shared cursor, which positional reads do not use. A file whose size cannot be read
        // is reported as empty; `apply` then fails with a size mismatch that names both sizes.
        let mut file = self;
        io::Seek::seek(&mut file, io::SeekFrom::End(0)).unwrap_or(0)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl<T: SourceRead + ?Sized> SourceRead for &T {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
}
