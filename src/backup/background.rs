//! PURE: an accumulator (a SHA-256, an etcd snapshot scan) fed on another thread, so that
//! hashing a backup runs beside its encryption instead of after it: SHA-256 of the plaintext and
//! of the sealed bytes costs about as much as the encryption itself (measured in
//! `benches/backup/`). Memory stays bounded: at most [`IN_FLIGHT`] chunks are queued, and their
//! buffers are reused and wiped when done (they may hold plaintext). No I/O; when a thread cannot
//! be started the work is done inline.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use zeroize::Zeroizing;

/// Chunks queued at most (with 64 KiB chunks, 512 KiB of buffers per accumulator).
pub const IN_FLIGHT: usize = 8;

/// Something that takes a stream slice by slice.
pub trait Accumulate: Send + 'static {
    /// Takes the next bytes.
    fn update(&mut self, bytes: &[u8]);
}

impl Accumulate for super::etcd::Scan {
    fn update(&mut self, bytes: &[u8]) {
        super::etcd::Scan::update(self, bytes);
    }
}

type Buffer = Zeroizing<Vec<u8>>;

enum Worker<S> {
    Thread {
        chunks: SyncSender<Buffer>,
        spent: Receiver<Buffer>,
        handle: JoinHandle<S>,
    },
    Inline(S),
}

/// `S` fed on its own thread.
pub struct Background<S: Accumulate> {
    worker: Worker<S>,
}

impl<S: Accumulate + Default> Background<S> {
    /// Starts a thread that feeds a new `S` (or feeds it here when no thread can be started).
    pub fn spawn() -> Self {
        let (chunks, incoming) = sync_channel::<Buffer>(IN_FLIGHT);
        let (give_back, spent) = sync_channel::<Buffer>(IN_FLIGHT + 1);
        let spawned = std::thread::Builder::new()
            .name("talvault-hash".into())
            .spawn(move || {
                let mut state = S::default();
                for buf in incoming {
                    state.update(&buf);
                    // The sender may have stopped taking buffers back: this one is then
                    // dropped, and wiped.
                    let _ = give_back.try_send(buf);
                }
                state
            });
        let worker = match spawned {
            Ok(handle) => Worker::Thread {
                chunks,
                spent,
                handle,
            },
            Err(_) => Worker::Inline(S::default()),
        };
        Background { worker }
    }
}

impl<S: Accumulate> Background<S> {
    /// Queues `bytes` (copied into a reused buffer; blocks while [`IN_FLIGHT`] are queued).
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.worker {
            Worker::Thread { chunks, spent, .. } => {
                let mut buf = match spent.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                        Zeroizing::new(Vec::with_capacity(bytes.len()))
                    }
                };
                buf.clear();
                buf.extend_from_slice(bytes);
                // A send fails only when the thread is gone (it panicked); `finish` re-raises it.
                let _ = chunks.send(buf);
            }
            Worker::Inline(s) => s.update(bytes),
        }
    }

    /// Waits for every queued chunk and returns the state.
    pub fn finish(self) -> S {
        match self.worker {
            Worker::Thread {
                chunks,
                spent,
                handle,
            } => {
                drop(chunks);
                let state = match handle.join() {
                    Ok(s) => s,
                    Err(panic) => std::panic::resume_unwind(panic),
                };
                drop(spent);
                state
            }
            Worker::Inline(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sum(u64, usize);

    impl Accumulate for Sum {
        fn update(&mut self, bytes: &[u8]) {
            self.0 += bytes.iter().map(|b| u64::from(*b)).sum::<u64>();
            self.1 += bytes.len();
        }
    }

    #[test]
    fn every_byte_arrives_in_order_of_sending() {
        let mut bg = Background::<Sum>::spawn();
        for i in 0..1000u32 {
            bg.update(&[(i % 251) as u8; 100]);
        }
        let s = bg.finish();
        assert_eq!(s.1, 100_000);
        assert_eq!(s.0, (0..1000u64).map(|i| (i % 251) * 100).sum::<u64>());
        let mut scan = Background::<crate::backup::etcd::Scan>::spawn();
        scan.update(b"hello");
        assert_eq!(
            scan.finish().finish().sha256,
            crate::digest::sha256(b"hello")
        );
    }
}
