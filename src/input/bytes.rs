//! Byte-level readers under the CSV and list parsers: a tee that spools
//! standard input for the second pass, a CR stripper that keeps `file:line`
//! exact, and the sniffing of CSV versus a plain list.

use std::io::{BufRead, BufReader, Read};

/// Copies what is read from `inner` into `copy` (stdin's spool for the second pass).
pub(super) struct Tee<R> {
    pub(super) inner: R,
    pub(super) copy: std::fs::File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        std::io::Write::write_all(&mut self.copy, &buf[..n])?;
        Ok(n)
    }
}

/// Streams bytes with every `\r` that precedes a `\n` removed.
pub(super) struct StripCr<R> {
    inner: R,
    raw: Box<[u8]>,
    ready: Vec<u8>,
    pos: usize,
    pending_cr: bool,
}

impl<R: Read> StripCr<R> {
    pub(super) fn new(inner: R) -> Self {
        StripCr {
            inner,
            raw: vec![0; 1 << 16].into_boxed_slice(),
            ready: Vec::with_capacity(1 << 16),
            pos: 0,
            pending_cr: false,
        }
    }
}

impl<R: Read> Read for StripCr<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.ready.len() {
            self.ready.clear();
            self.pos = 0;
            let n = self.inner.read(&mut self.raw)?;
            if n == 0 {
                if !self.pending_cr {
                    return Ok(0);
                }
                self.pending_cr = false;
                self.ready.push(b'\r');
                break;
            }
            for &b in &self.raw[..n] {
                if self.pending_cr {
                    self.pending_cr = false;
                    if b != b'\n' {
                        self.ready.push(b'\r');
                    }
                }
                if b == b'\r' {
                    self.pending_cr = true;
                } else {
                    self.ready.push(b);
                }
            }
        }
        let k = out.len().min(self.ready.len() - self.pos);
        out[..k].copy_from_slice(&self.ready[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

/// A file is CSV when its first meaningful line names the `InstanceId` column.
pub(super) fn sniff_csv(reader: &mut BufReader<impl Read>) -> std::io::Result<bool> {
    let buf = reader.fill_buf()?;
    let text = String::from_utf8_lossy(buf);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        return Ok(line.split(',').any(|f| {
            f.trim()
                .trim_matches('"')
                .eq_ignore_ascii_case("instanceid")
        }));
    }
    Ok(false)
}
