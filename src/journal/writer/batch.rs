//! The writer thread's loop: drain what is queued, run each operation in its
//! own savepoint inside one transaction, commit once, then answer every caller
//! (an answer means "committed").

use std::sync::mpsc;

use rusqlite::{Connection, Transaction};

use super::events::ChainState;
use super::{apply, import, reset, runs, Command, Reply};
use crate::journal::JournalError;

/// The most operations in one transaction.
const BATCH_LIMIT: usize = 1024;

pub(super) fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Command>,
    mut chain: ChainState,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_LIMIT {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let saved = chain.clone();
        let mut tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                // A deferred BEGIN takes no lock, so this does not happen in practice;
                // dropping the batch closes every reply channel: callers see `Closed`.
                tracing::error!(error = %e, "the journal cannot begin a transaction");
                drop(batch);
                continue;
            }
        };
        let mut answers: Vec<Box<dyn Deliver>> = Vec::with_capacity(batch.len());
        for c in batch {
            let answer = match c {
                Command::Query(f) => {
                    f(&tx);
                    continue;
                }
                Command::Import(specs, at_ms, reply) => {
                    op(&mut tx, &mut chain, "import", reply, |c, ch| {
                        import::import(c, ch, specs, at_ms)
                    })
                }
                Command::Apply(change, reply) => {
                    op(&mut tx, &mut chain, "apply", reply, |c, ch| {
                        apply::apply(c, ch, change)
                    })
                }
                Command::StartRun(run, reply) => {
                    op(&mut tx, &mut chain, "start_run", reply, |c, ch| {
                        runs::start(c, ch, run)
                    })
                }
                Command::EndRun(end, reply) => {
                    op(&mut tx, &mut chain, "end_run", reply, |c, ch| {
                        runs::end(c, ch, end)
                    })
                }
                Command::Rollout(note, reply) => {
                    op(&mut tx, &mut chain, "rollout", reply, |c, ch| {
                        runs::note(c, ch, note)
                    })
                }
                Command::ResetFailed(r, reply) => {
                    op(&mut tx, &mut chain, "reset_failed", reply, |c, ch| {
                        reset::reset_failed(c, ch, r)
                    })
                }
            };
            answers.push(answer);
        }
        let committed = tx.commit().map_err(|e| format!("commit failed: {e}"));
        if committed.is_err() {
            chain = saved;
        }
        for a in answers {
            a.deliver(&committed);
        }
    }
}

/// Runs one operation in a savepoint of the batch's transaction: on an error it
/// rolls back alone (and the chain head with it), the rest of the batch stands.
fn op<T: Send + 'static>(
    tx: &mut Transaction<'_>,
    chain: &mut ChainState,
    name: &'static str,
    reply: Reply<T>,
    f: impl FnOnce(&Connection, &mut ChainState) -> Result<T, JournalError>,
) -> Box<dyn Deliver> {
    let _span = tracing::debug_span!("journal", op = name).entered();
    let before = chain.clone();
    let result = match tx.savepoint() {
        Ok(sp) => match f(&sp, chain) {
            Ok(v) => sp.commit().map(|()| v).map_err(JournalError::from),
            // Dropping the savepoint rolls it back.
            Err(e) => Err(e),
        },
        Err(e) => Err(e.into()),
    };
    if let Err(e) = &result {
        tracing::debug!(error = %e, "rolled back");
        *chain = before;
    }
    Box::new(Answer(reply, result))
}

/// A result waiting for the batch to commit.
trait Deliver {
    fn deliver(self: Box<Self>, committed: &Result<(), String>);
}

struct Answer<T>(Reply<T>, Result<T, JournalError>);

impl<T> Deliver for Answer<T> {
    fn deliver(self: Box<Self>, committed: &Result<(), String>) {
        let Answer(reply, result) = *self;
        let result = match committed {
            Ok(()) => result,
            Err(reason) => Err(JournalError::Open {
                path: String::new(),
                reason: reason.clone(),
            }),
        };
        let _ = reply.send(result);
    }
}
