//! Pings: the writer answers them between transactions with the store's size, measured
//! now, so `/healthz` knows the store answers and how full it is.

use super::{measure, Command, StoreStatus, Writer};

impl Writer {
    /// Answers pings with the store's size, measured now (a few pragmas and a `stat`,
    /// no write).
    pub(super) fn answer_pings(&mut self, pings: Vec<Command>) {
        let status = measure(&self.conn).inspect_err(|err| {
            tracing::error!("could not measure the store's size: {err:#}");
        });
        let status = status.map(|used| {
            if self.budget.max.is_some() {
                self.budget.used = used;
            }
            StoreStatus {
                used_bytes: used,
                max_size: self.budget.max,
            }
        });
        for ping in pings {
            if let Command::Ping(reply) = ping {
                let answer = match &status {
                    Ok(status) => Ok(*status),
                    Err(_) => Err(anyhow::anyhow!(
                        "could not measure the store's size; the posthorn log has the details"
                    )),
                };
                let _ = reply.send(answer);
            }
        }
    }
}
