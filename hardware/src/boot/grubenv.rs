//! The GRUB environment block (`grubenv`), byte-compatible with `grub-editenv` and GRUB's `save_env`.
//!
//! Format: a block (1024 bytes by default) starting with `# GRUB Environment Block\n`, then
//! `name=value\n` lines (`\` and newline in values escaped with `\`), then `#` padding to the end.
//! Lines starting with `#` are comments. [`GrubEnvBlock::set`] and [`GrubEnvBlock::unset`] edit the
//! block the way GRUB's `envblk.c` does (values replaced in place, new names appended, padding
//! re-filled), so the same edits give the same bytes as the real tool.
//!
//! Crash safety: the block has no checksum. [`GrubEnv`] writes the whole block with one write, in
//! place (as GRUB's own `save_env` does); our variables keep fixed positions and single-character
//! values once written, so a torn write mixes old and new values, never garbles a line. On a file, use
//! [`crate::block::file::AtomicFile`] (temp + rename) and a cut leaves the old or the new block.

use std::path::Path;

use super::EnvStore;
use super::vars::EnvVars;
use crate::block::BlockDevice;
use crate::block::file::AtomicFile;
use crate::error::BootError;

/// The signature every block starts with.
pub const SIGNATURE: &[u8] = b"# GRUB Environment Block\n";
/// The block size `grub-editenv create` uses.
pub const DEFAULT_SIZE: usize = 1024;
const BACKEND: &str = "grubenv";

/// A GRUB environment block (the raw bytes, always a valid block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubEnvBlock {
    bytes: Vec<u8>,
}

/// Why a block cannot be parsed or edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrubEnvError {
    /// No signature, or the block is shorter than it.
    BadSignature,
    /// The last non-`#` byte is not a newline (GRUB refuses to edit such a block).
    Broken,
    /// The edit does not fit; `needed` bytes of content against the block size.
    NoSpace {
        /// Content bytes after the edit.
        needed: usize,
    },
    /// The name is empty or contains `=` or a newline, or starts with `#`.
    BadName,
}

impl GrubEnvBlock {
    /// An empty block of `size` bytes (the upstream `grub-editenv create` output).
    pub fn new(size: usize) -> Self {
        let mut bytes = SIGNATURE.to_vec();
        bytes.resize(size.max(SIGNATURE.len()), b'#');
        Self { bytes }
    }

    /// Check the signature (as GRUB's `grub_envblk_open` does) and wrap raw bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GrubEnvError> {
        if !bytes.starts_with(SIGNATURE) {
            return Err(GrubEnvError::BadSignature);
        }
        Ok(Self { bytes })
    }

    /// Whether GRUB would refuse to edit this block (content not ending in a newline, e.g. after a
    /// torn append). It still reads fine; [`GrubEnv`] rebuilds such a block on the next store.
    pub fn is_broken(&self) -> bool {
        self.content_end().is_err()
    }

    /// The raw block.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// End of the content: one past the last byte that is not trailing `#` padding.
    fn content_end(&self) -> Result<usize, GrubEnvError> {
        let end = self
            .bytes
            .iter()
            .rposition(|&b| b != b'#')
            .ok_or(GrubEnvError::Broken)?;
        if self.bytes[end] != b'\n' || end < SIGNATURE.len() - 1 {
            return Err(GrubEnvError::Broken);
        }
        Ok(end + 1)
    }

    /// All variables, parsed exactly like GRUB's `grub_envblk_iterate`.
    pub fn vars(&self) -> EnvVars {
        let b = &self.bytes;
        let mut vars = EnvVars::new();
        let mut p = SIGNATURE.len();
        while p < b.len() {
            if b[p] == b'#' {
                p = next_line(b, p);
                continue;
            }
            let Some(eq) = b[p..].iter().position(|&c| c == b'=').map(|i| p + i) else {
                break;
            };
            let (mut q, mut value) = (eq + 1, Vec::new());
            while q < b.len() && b[q] != b'\n' {
                if b[q] == b'\\' {
                    q += 1;
                }
                if let Some(&c) = b.get(q) {
                    value.push(c);
                }
                q += 1;
            }
            if q >= b.len() {
                break;
            }
            vars.set(
                &String::from_utf8_lossy(&b[p..eq]),
                &String::from_utf8_lossy(&value),
            );
            p = q + 1;
        }
        vars
    }

    /// Start of the line holding `name=`, and the end of its value (the newline), if present.
    fn find(&self, name: &str, content_end: usize) -> Option<(usize, usize)> {
        let (b, n) = (&self.bytes, name.as_bytes());
        let mut p = SIGNATURE.len();
        while p + n.len() + 1 < content_end {
            if b[p..].starts_with(n) && b[p + n.len()] == b'=' {
                // A value ending in `\` escapes the block's last newline; stop at that newline
                // anyway, so edits stay inside the content (found by the `grubenv` fuzz target).
                let nl = (next_line(&b[..content_end], p + n.len() + 1) - 1).min(content_end - 1);
                return Some((p, nl));
            }
            p = next_line(b, p);
        }
        None
    }

    /// Set `name` to `value`: in place if present, appended otherwise (`grub_envblk_set`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), GrubEnvError> {
        check_name(name)?;
        let end = self.content_end()?;
        let mut escaped = Vec::with_capacity(value.len());
        for &c in value.as_bytes() {
            if c == b'\\' || c == b'\n' {
                escaped.push(b'\\');
            }
            escaped.push(c);
        }
        let mut content = self.bytes[..end].to_vec();
        match self.find(name, end) {
            Some((line, nl)) => {
                content.splice(line + name.len() + 1..nl, escaped);
            }
            None => {
                content.extend_from_slice(name.as_bytes());
                content.push(b'=');
                content.extend_from_slice(&escaped);
                content.push(b'\n');
            }
        }
        self.replace_content(content)
    }

    /// Remove `name` if present (`grub_envblk_delete`).
    pub fn unset(&mut self, name: &str) -> Result<(), GrubEnvError> {
        let end = self.content_end()?;
        if let Some((line, nl)) = self.find(name, end) {
            let mut content = self.bytes[..end].to_vec();
            content.drain(line..=nl);
            self.replace_content(content)?;
        }
        Ok(())
    }

    fn replace_content(&mut self, mut content: Vec<u8>) -> Result<(), GrubEnvError> {
        if content.len() > self.bytes.len() {
            return Err(GrubEnvError::NoSpace {
                needed: content.len(),
            });
        }
        content.resize(self.bytes.len(), b'#');
        self.bytes = content;
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), GrubEnvError> {
    if name.is_empty() || name.starts_with('#') || name.contains(['=', '\n']) {
        return Err(GrubEnvError::BadName);
    }
    Ok(())
}

/// Index after the end of the line starting at `p` (escapes skip a byte), GRUB's `find_next_line`.
fn next_line(b: &[u8], mut p: usize) -> usize {
    while p < b.len() {
        match b[p] {
            b'\\' => p += 2,
            b'\n' => break,
            _ => p += 1,
        }
    }
    p + 1
}

/// A GRUB environment on a [`BlockDevice`] (the whole device is the block).
#[derive(Debug)]
pub struct GrubEnv<D: BlockDevice> {
    dev: D,
    /// The block read last and its variables: every read still reads the device, but parses only
    /// when the bytes differ from these (boot control reads far more often than it writes).
    parsed: Option<(GrubEnvBlock, EnvVars)>,
}

impl GrubEnv<AtomicFile> {
    /// Open an existing `grubenv` file; updates replace it atomically.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self, BootError> {
        let path = path.as_ref();
        AtomicFile::open(path)
            .map(Self::new)
            .map_err(|source| device_err(path, source))
    }

    /// Create a `grubenv` file holding an empty block of [`DEFAULT_SIZE`] bytes.
    pub fn create_file(path: impl AsRef<Path>) -> Result<Self, BootError> {
        let path = path.as_ref();
        let block = GrubEnvBlock::new(DEFAULT_SIZE);
        AtomicFile::create(path, block.bytes)
            .map(Self::new)
            .map_err(|source| device_err(path, source))
    }
}

fn device_err(path: &Path, source: crate::error::BlockError) -> BootError {
    BootError::Device {
        backend: BACKEND,
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

impl<D: BlockDevice> GrubEnv<D> {
    /// Use all of `dev` as the environment block.
    pub fn new(dev: D) -> Self {
        Self { dev, parsed: None }
    }

    /// Read and check the block.
    pub fn read_block(&mut self) -> Result<GrubEnvBlock, BootError> {
        let mut bytes = vec![0u8; self.dev.size() as usize];
        self.dev
            .read_at(0, &mut bytes)
            .map_err(|source| device_err(self.dev.location(), source))?;
        GrubEnvBlock::from_bytes(bytes).map_err(|e| self.format_err(&e, ""))
    }

    /// The variables of `block`, parsed only when it differs from the block parsed last.
    fn vars_of(&mut self, block: &GrubEnvBlock) -> EnvVars {
        match &self.parsed {
            Some((seen, vars)) if seen == block => vars.clone(),
            _ => {
                let vars = block.vars();
                self.parsed = Some((block.clone(), vars.clone()));
                vars
            }
        }
    }

    fn format_err(&self, e: &GrubEnvError, key: &str) -> BootError {
        let path = self.dev.location().to_path_buf();
        match e {
            GrubEnvError::BadSignature => BootError::Corrupt {
                backend: BACKEND,
                path,
                reason: "missing GRUB environment signature".into(),
            },
            GrubEnvError::Broken => BootError::Corrupt {
                backend: BACKEND,
                path,
                reason: "content does not end with a newline".into(),
            },
            GrubEnvError::NoSpace { needed } => BootError::TooLarge {
                backend: BACKEND,
                path,
                needed: *needed,
                capacity: self.dev.size() as usize,
            },
            GrubEnvError::BadName => BootError::InvalidVariable {
                backend: BACKEND,
                path,
                key: key.to_owned(),
                reason: "names must be non-empty, without '=' or newline, not starting with '#'",
            },
        }
    }
}

impl<D: BlockDevice> EnvStore for GrubEnv<D> {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn location(&self) -> &Path {
        self.dev.location()
    }

    fn load(&mut self) -> Result<EnvVars, BootError> {
        let block = self.read_block()?;
        Ok(self.vars_of(&block))
    }

    fn store(&mut self, vars: &EnvVars) -> Result<(), BootError> {
        let mut block = self.read_block()?;
        if block.is_broken() {
            tracing::warn!(path = %self.dev.location().display(), "GRUB environment block broken, rebuilding it");
            block = GrubEnvBlock::new(block.bytes.len());
        }
        let current = self.vars_of(&block);
        for (name, _) in current.iter() {
            if vars.get(name).is_none() {
                block.unset(name).map_err(|e| self.format_err(&e, name))?;
            }
        }
        // Only touch what changed: unchanged lines (even odd ones GRUB itself parses loosely) stay.
        for (name, value) in vars.iter().filter(|(n, v)| current.get(n) != Some(*v)) {
            block.set(name, value).map_err(|e| self.format_err(&e, name))?;
        }
        let location = self.dev.location().to_path_buf();
        self.dev
            .write_at(0, block.as_bytes())
            .map_err(|source| device_err(&location, source))?;
        self.dev.flush().map_err(|source| device_err(&location, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_unset_and_escapes_round_trip() {
        let mut block = GrubEnvBlock::new(DEFAULT_SIZE);
        block.set("b", "2").unwrap();
        block.set("a", "x\\y\nz").unwrap();
        block.set("b", "333").unwrap();
        let text = &block.as_bytes()[SIGNATURE.len()..];
        assert!(text.starts_with(b"b=333\na=x\\\\y\\\nz\n#"));
        assert_eq!(
            block.vars().iter().collect::<Vec<_>>(),
            [("b", "333"), ("a", "x\\y\nz")]
        );
        block.unset("b").unwrap();
        assert_eq!(block.vars().len(), 1);
        assert_eq!(block.as_bytes().len(), DEFAULT_SIZE);
        assert_eq!(block.set("a=", "1"), Err(GrubEnvError::BadName));
        assert!(matches!(
            block.set("big", &"v".repeat(DEFAULT_SIZE)),
            Err(GrubEnvError::NoSpace { .. })
        ));
    }

    #[test]
    fn rejects_bad_blocks() {
        assert_eq!(
            GrubEnvBlock::from_bytes(vec![b'#'; 1024]),
            Err(GrubEnvError::BadSignature)
        );
        let mut torn = GrubEnvBlock::new(64).as_bytes().to_vec();
        torn[40] = b'x';
        let mut torn = GrubEnvBlock::from_bytes(torn).unwrap();
        assert!(torn.is_broken());
        assert!(torn.vars().is_empty());
        assert_eq!(torn.set("a", "1"), Err(GrubEnvError::Broken));
    }
}
