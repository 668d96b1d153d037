//! Streaming age for backups of any size: [`seal`] encrypts a stream to recipients in binary
//! form (what `age -r` writes, not armored: a backup is not reviewed in git and armor would add a
//! third), taking the sealed bytes' length and SHA-256 and their head ([`SealedDigest`]) as they
//! pass; [`open`] decrypts one with the first identity that matches. Memory stays constant:
//! age's STREAM works in 64 KiB chunks (c2sp.org/age "payload"). It opens no file and names
//! none: writers and the opened file come in, `path` only names it in errors.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

use ::age::stream::{StreamReader, StreamWriter};
use ::age::{Callbacks, DecryptError, Decryptor};

use super::{AgeError, Identity, OpenedBy, Recipient, decrypt_error, encryptor, seal_failed};
use crate::backup::background::{Accumulate, Background};
use crate::backup::{MAX_HEAD_LEN, SealedDigest};
use crate::digest::Sha256Stream;

/// Length and SHA-256 of the bytes written so far. Fed on its own thread ([`Background`]),
/// beside the encryption.
#[derive(Default)]
struct Tally {
    size: u64,
    all: Sha256Stream,
}

impl Accumulate for Tally {
    fn update(&mut self, bytes: &[u8]) {
        self.all.update(bytes);
        self.size += bytes.len() as u64;
    }
}

/// Passes writes on to `inner`, counting and hashing them, and keeping a copy of the head (the
/// age header and payload nonce, all that is written before the payload starts).
struct TapWriter<W> {
    inner: W,
    tally: Background<Tally>,
    head: Rc<RefCell<Option<Vec<u8>>>>,
}

impl<W: Write> Write for TapWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(head) = self.head.borrow_mut().as_mut() {
            head.extend_from_slice(&buf[..n]);
        }
        self.tally.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A stream being sealed: write the plaintext, then [`SealWriter::finish`].
pub struct SealWriter<W: Write> {
    inner: StreamWriter<TapWriter<W>>,
    head: Vec<u8>,
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> SealWriter<W> {
    /// Writes the last chunk; returns the writer and what was written. Without it the file is
    /// truncated and will not open.
    pub fn finish(self) -> io::Result<(W, SealedDigest)> {
        let mut tap = self.inner.finish()?;
        tap.flush()?;
        let tally = tap.tally.finish();
        let digest = SealedDigest {
            size: tally.size,
            sha256: tally.all.finish(),
            head_len: self.head.len() as u64,
            head_sha256: crate::digest::sha256(&self.head),
        };
        Ok((tap.inner, digest))
    }
}

/// Starts sealing to `recipients` into `out` (the age header is written now). Plugin
/// recipients run their plugin with `callbacks`.
pub fn seal<W: Write, C: Callbacks>(
    out: W,
    recipients: &[Recipient],
    callbacks: C,
) -> Result<SealWriter<W>, AgeError> {
    let head = Rc::new(RefCell::new(Some(Vec::new())));
    let tap = TapWriter {
        inner: out,
        tally: Background::spawn(),
        head: Rc::clone(&head),
    };
    // `wrap_output` writes the header and the payload nonce, nothing of the payload.
    let inner = encryptor(recipients, callbacks)?
        .wrap_output(tap)
        .map_err(seal_failed)?;
    let head = head.borrow_mut().take().unwrap_or_default();
    Ok(SealWriter { inner, head })
}

/// The first bytes of `file` (from its start), as many as the longest head that could match
/// (at most [`MAX_HEAD_LEN`]): what `backup::find_by_head` is given.
pub fn read_prefix(mut file: &File, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut out = Vec::new();
    file.take(len.min(MAX_HEAD_LEN)).read_to_end(&mut out)?;
    Ok(out)
}

/// An opened sealed file: read the plaintext from it. Decryption errors (a changed byte, a cut,
/// bytes appended) surface as `read` errors of kind `InvalidData` or `UnexpectedEof`, at the
/// chunk where they are found; age reads to the end of the file to find its last chunk.
pub struct OpenStream<'a> {
    reader: StreamReader<&'a File>,
}

impl Read for OpenStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

fn rewind(mut file: &File) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))
}

/// Opens the sealed file `file` (from its start; `path` names it in errors) with the first of
/// `identities` that matches one of its recipients, and says which did. Only the header is read
/// here; the payload is decrypted as the stream is read.
pub fn open<'a>(
    path: &Path,
    file: &'a File,
    identities: &[Identity],
) -> Result<(OpenStream<'a>, OpenedBy), AgeError> {
    let io_corrupt = |e: io::Error| super::corrupt(path, e);
    let mut passphrase_file = false;
    // One identity at a time (as `open` does for vault files), so the one that matched is
    // known; the header is read again for each, which costs microseconds.
    for identity in identities {
        rewind(file).map_err(io_corrupt)?;
        let decryptor = Decryptor::new(file).map_err(|e| decrypt_error(path, e))?;
        passphrase_file = decryptor.is_scrypt();
        match decryptor.decrypt(std::iter::once(
            identity.inner.as_ref() as &dyn ::age::Identity
        )) {
            Ok(reader) => return Ok((OpenStream { reader }, identity.public.clone())),
            Err(DecryptError::NoMatchingKeys) => {}
            Err(DecryptError::KeyDecryptionFailed) => {
                return Err(AgeError::IdentityLocked {
                    path: identity.origin.clone(),
                });
            }
            Err(e) => return Err(decrypt_error(path, e)),
        }
    }
    if identities.is_empty() {
        rewind(file).map_err(io_corrupt)?;
        passphrase_file = Decryptor::new(file)
            .map_err(|e| decrypt_error(path, e))?
            .is_scrypt();
    }
    Err(AgeError::NoMatchingIdentity {
        path: path.to_path_buf(),
        tried: identities.len(),
        passphrase_file,
    })
}

#[cfg(test)]
#[expect(
    clippy::disallowed_methods,
    reason = "tests read a sealed file back from a temporary directory"
)]
#[expect(
    deprecated,
    reason = "X25519 identities, as vaults use them (age 0.13 prefers post-quantum ones)"
)]
mod tests {
    use super::*;
    use ::age::NoCallbacks;
    use ::age::secrecy::ExposeSecret as _;

    /// An identity that can be made again (identities are not `Clone`), and its recipient.
    struct Key(String, Recipient);

    impl Key {
        fn new() -> Self {
            let id = ::age::x25519::Identity::generate();
            let r = Recipient::parse(&id.to_public().to_string()).unwrap();
            Key(id.to_string().expose_secret().to_owned(), r)
        }

        fn identity(&self) -> Identity {
            Identity::from_x25519(self.0.parse().unwrap(), "k.txt")
        }
    }

    fn sealed_file(plain: &[u8], to: &[Recipient]) -> (tempfile::NamedTempFile, SealedDigest) {
        let mut w = seal(Vec::new(), to, NoCallbacks).unwrap();
        // Odd-sized writes across the 64 KiB chunk boundaries.
        for piece in plain.chunks(50_001) {
            w.write_all(piece).unwrap();
        }
        let (bytes, digest) = w.finish().unwrap();
        assert_eq!(digest.size, bytes.len() as u64);
        assert_eq!(digest.sha256, crate::digest::sha256(&bytes));
        // The head is the header and the nonce: it ends 16 bytes after the header's MAC line.
        let mac_line = bytes.windows(4).position(|w| w == b"\n---").unwrap() + 1;
        let header_end = mac_line + bytes[mac_line..].iter().position(|b| *b == b'\n').unwrap() + 1;
        assert_eq!(digest.head_len, header_end as u64 + 16);
        assert_eq!(
            digest.head_sha256,
            crate::digest::sha256(&bytes[..header_end + 16])
        );
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "binary, not armored"
        );
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        (f, digest)
    }

    fn read_all(path: &Path, bytes: &[u8], ids: &[Identity]) -> Result<Vec<u8>, String> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let h = f.reopen().unwrap();
        let (mut s, _) = open(path, &h, ids).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn round_trip_in_chunks_reports_the_identity_and_the_sealed_digest() {
        let (a, b, other) = (Key::new(), Key::new(), Key::new());
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let ids = [other.identity(), b.identity(), a.identity()];
        for len in [0, 1, 65_536, 131_072, 200_000] {
            let (file, digest) = sealed_file(&plain[..len], &[a.1.clone(), b.1.clone()]);
            let f = file.reopen().unwrap();
            let (mut stream, by) = open(file.path(), &f, &ids).unwrap();
            assert_eq!(by, OpenedBy::X25519(b.1.to_string()));
            let mut out = Vec::new();
            stream.read_to_end(&mut out).unwrap();
            assert_eq!(out, &plain[..len]);
            assert_eq!(
                read_prefix(&f, digest.head_len).unwrap().len() as u64,
                digest.head_len
            );
        }
    }

    #[test]
    fn damage_is_an_error_while_reading_and_strangers_are_refused() {
        let a = Key::new();
        let plain = vec![7u8; 150_000];
        let (file, digest) = sealed_file(&plain, std::slice::from_ref(&a.1));
        let bytes = std::fs::read(file.path()).unwrap();
        assert_eq!(digest.size, bytes.len() as u64);
        let ids = [a.identity()];
        let p = Path::new("b.age");
        assert_eq!(read_all(p, &bytes, &ids).unwrap(), plain);
        let mut flipped = bytes.clone();
        flipped[bytes.len() - 1000] ^= 1;
        assert!(read_all(p, &flipped, &ids).is_err());
        for cut in [1, 16, 70_000] {
            assert!(
                read_all(p, &bytes[..bytes.len() - cut], &ids).is_err(),
                "cut {cut}"
            );
        }
        let mut appended = bytes.clone();
        appended.extend_from_slice(b"junk");
        assert!(read_all(p, &appended, &ids).is_err());
        let err = read_all(p, b"not age", &ids).unwrap_err();
        assert!(err.contains("damaged"), "{err}");
        let stranger = Key::new();
        let h = file.reopen().unwrap();
        let err = open(file.path(), &h, &[stranger.identity()])
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, AgeError::NoMatchingIdentity { tried: 1, .. }));
    }
}
