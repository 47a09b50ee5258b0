//! One page of a newest-first list with optional filters: the shape every `*.list` command shares.

use rusqlite::{Connection, Row, ToSql};

use super::StoreError;

/// Builds `SELECT … WHERE … ORDER BY seq DESC LIMIT ?` from the filters a caller sets.
pub(super) struct Page {
    sql: String,
    args: Vec<Box<dyn ToSql>>,
    order: &'static str,
}

impl Page {
    /// Starts a page of `columns` from `table`, unfiltered.
    pub(super) fn of(columns: &str, table: &str) -> Self {
        Page {
            sql: format!("SELECT {columns} FROM {table} WHERE 1"),
            args: Vec::new(),
            order: "seq DESC",
        }
    }

    /// Orders rows by `order` instead of `seq DESC`; it must still put newer rows first.
    pub(super) fn order_by(&mut self, order: &'static str) {
        self.order = order;
    }

    /// Keeps rows where `column` equals `value`, when a value is given.
    pub(super) fn eq<T: ToSql + Clone + 'static>(&mut self, column: &str, value: Option<&T>) {
        if let Some(v) = value {
            self.sql.push_str(&format!(" AND {column} = ?"));
            self.args.push(Box::new(v.clone()));
        }
    }

    /// Keeps rows whose text `column` starts with `prefix`; `substr` rather than LIKE so `%`
    /// and `_` in user input match themselves.
    pub(super) fn prefix(&mut self, column: &str, prefix: Option<&String>) {
        if let Some(p) = prefix {
            self.sql
                .push_str(&format!(" AND substr({column}, 1, ?) = ?"));
            self.args.push(Box::new(p.len() as i64));
            self.args.push(Box::new(p.clone()));
        }
    }

    /// Adds a condition with its own placeholders, for filters the others do not cover.
    pub(super) fn raw(&mut self, condition: &str, args: Vec<Box<dyn ToSql>>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self.args.extend(args);
    }

    /// Runs the query: rows older than `before` (a `seq`), newest first, at most `limit`.
    pub(super) fn fetch<T>(
        mut self,
        conn: &Connection,
        before: Option<i64>,
        limit: u32,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.finish(before, limit);
        let mut st = conn.prepare_cached(&self.sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(self.args.iter()), map)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// SQLite's plan for the query `fetch` would run, one line per step.
    #[cfg(test)]
    pub(super) fn plan(mut self, conn: &Connection, before: Option<i64>, limit: u32) -> String {
        self.finish(before, limit);
        let mut st = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", self.sql))
            .expect("prepare");
        let rows = st
            .query_map(rusqlite::params_from_iter(self.args.iter()), |r| {
                r.get::<_, String>(3)
            })
            .expect("plan");
        rows.collect::<Result<Vec<_>, _>>()
            .expect("plan rows")
            .join("\n")
    }

    fn finish(&mut self, before: Option<i64>, limit: u32) {
        if let Some(b) = before {
            self.sql.push_str(" AND seq < ?");
            self.args.push(Box::new(b));
        }
        self.sql.push_str(" ORDER BY ");
        self.sql.push_str(self.order);
        self.sql.push_str(" LIMIT ?");
        self.args.push(Box::new(limit));
    }
}
