//! Files sent as HTTP bodies without holding them whole in memory: a byte range of an open
//! file as a stream of chunks, each read on tokio's blocking pool (what `tokio::fs` does too).

use std::io::{Read, Seek, SeekFrom};

use axum::body::Bytes;

/// Bytes read at a time.
const CHUNK: usize = 256 * 1024;

/// `len` bytes of `file` from `start`, as a stream of chunks each read on the blocking pool.
pub fn chunks(
    file: std::fs::File,
    start: u64,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold((file, start, len), |(mut file, offset, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
            let mut chunk = vec![0; want];
            let read = file
                .seek(SeekFrom::Start(offset))
                .and_then(|_| file.read(&mut chunk));
            (
                file,
                read.map(|n| {
                    chunk.truncate(n);
                    chunk
                }),
            )
        })
        .await
        .map_err(std::io::Error::other)?;
        let chunk = chunk?;
        if chunk.is_empty() {
            // The file shrank under us: stop rather than loop.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than when it was opened",
            ));
        }
        let n = chunk.len() as u64;
        Ok(Some((Bytes::from(chunk), (file, offset + n, left - n))))
    })
}
