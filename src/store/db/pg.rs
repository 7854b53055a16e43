//! The PostgreSQL side of `Db`: the client, its prepared statements (one per SQL text,
//! like SQLite's statement cache), the translation of `?N` placeholders to `$N`, and
//! the statements held back to share a round trip (see [`Client::hold`]).

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::Statement;

use super::Value;

/// Prepared statements kept; past this the cache starts over (dynamic SQL, e.g. `IN`
/// lists of varying length, would otherwise grow it without end).
const CACHE_CAPACITY: usize = 256;

pub(super) struct Client {
    client: postgres::Client,
    /// To connect again once the server has dropped the connection (a restart, a
    /// failover, an idle timeout).
    url: String,
    statements: HashMap<String, Statement>,
    /// Between `BEGIN` and its end: a lost connection then fails the transaction, never
    /// a silent reconnect that would run its remaining statements outside it.
    in_transaction: bool,
    /// `BEGIN`, `SAVEPOINT` and `RELEASE` not sent yet (see [`Client::hold`]).
    held: String,
}

impl Client {
    pub(super) fn new(client: postgres::Client, url: String) -> Client {
        Client {
            client,
            url,
            statements: HashMap::new(),
            in_transaction: false,
            held: String::new(),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Connects again if the connection is gone and no transaction is open.
    fn reconnect_if_closed(&mut self) {
        if !self.client.is_closed() || self.in_transaction {
            return;
        }
        match crate::store::schema_pg::connect(&self.url) {
            Ok(client) => {
                tracing::info!("store: connected to PostgreSQL again");
                self.client = client;
                self.statements.clear();
            }
            Err(err) => tracing::warn!("store: PostgreSQL is unreachable: {err:#}"),
        }
    }

    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        self.reconnect_if_closed();
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&placeholders(sql))?;
        if self.statements.len() >= CACHE_CAPACITY {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn execute(
        &mut self,
        sql: &str,
        values: &[Value<'_>],
    ) -> Result<u64, postgres::Error> {
        self.send_held()?;
        let statement = self.prepared(sql)?;
        self.client.execute(&statement, &refs(values))
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        values: &[Value<'_>],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        self.send_held()?;
        let statement = self.prepared(sql)?;
        self.client.query(&statement, &refs(values))
    }

    /// Holds back a statement that only opens or closes a transaction or savepoint
    /// (`BEGIN ...`, `SAVEPOINT x`, `RELEASE x`): it goes with the next batch, or just
    /// before the next statement with parameters. Each alone would cost a round trip to
    /// the server, and a writer transaction opens and releases a savepoint per command.
    pub(super) fn hold(&mut self, sql: &str) {
        if sql.starts_with("BEGIN") {
            // Reconnecting is still allowed here; once BEGIN is held it is not.
            self.reconnect_if_closed();
            self.in_transaction = true;
        }
        if !self.held.is_empty() {
            self.held.push_str("; ");
        }
        self.held.push_str(sql);
    }

    fn send_held(&mut self) -> Result<(), postgres::Error> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        self.send(&held)
    }

    /// Runs statements separated by `;` after what is held. A rollback drops or sends
    /// apart what is held: released savepoints are moot then, and an error in them
    /// must not keep the rollback from running.
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        if sql == "ROLLBACK" {
            // A transaction whose BEGIN is still held never started on the server.
            let never_started = self.held.starts_with("BEGIN");
            self.held.clear();
            if never_started {
                self.in_transaction = false;
                return Ok(());
            }
            return self.send(sql);
        }
        if sql.starts_with("ROLLBACK") {
            let _ = self.send_held();
            return self.send(sql);
        }
        if self.held.is_empty() {
            return self.send(sql);
        }
        let combined = format!("{}; {sql}", std::mem::take(&mut self.held));
        let result = self.send(&combined);
        if result.is_err() && sql.ends_with("COMMIT") && !self.client.is_closed() {
            // The server stopped at an error before COMMIT: end the transaction here.
            let _ = self.send("ROLLBACK");
        }
        result
    }

    fn send(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.reconnect_if_closed();
        let result = self.client.batch_execute(sql);
        let last = sql.rsplit("; ").next().unwrap_or(sql);
        if last == "COMMIT" || last == "ROLLBACK" {
            self.in_transaction = false;
        } else if sql.starts_with("BEGIN") {
            // Even if what followed BEGIN failed: the transaction is open until ROLLBACK.
            self.in_transaction = !self.client.is_closed();
        }
        result
    }
}

fn refs<'a>(values: &'a [Value<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// `?N` becomes `$N`, and a bare `?` the next number, outside quoted text and comments.
pub(super) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next = 1;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_quotes_and_comments() {
        assert_eq!(
            placeholders("SELECT ?1, ?12 FROM t WHERE a = ? AND b = ?"),
            "SELECT $1, $12 FROM t WHERE a = $1 AND b = $2"
        );
        assert_eq!(
            placeholders("SELECT '?1', \"a?\" -- why?\n, ?2"),
            "SELECT '?1', \"a?\" -- why?\n, $2"
        );
    }
}
