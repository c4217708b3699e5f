//! The console's view of the registry: filtered, sorted, keyset-paged.

use anyhow::Context;
use sqlx::{AssertSqlSafe, Row};

use super::certificates::{COLUMNS, from_row};
use super::{CertificateRecord, Store};

#[derive(Debug, Clone, Default)]
pub struct RegistryFilter {
    /// Number, name, e-mail or event, case-insensitive substring.
    pub q: Option<String>,
    /// A certificate status, or "revoked".
    pub status: Option<String>,
    pub event_id: Option<i64>,
    /// Issued at or after / before (Unix ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrySort {
    #[default]
    NumberDesc,
    NumberAsc,
    IssuedDesc,
}

impl RegistrySort {
    pub fn parse(s: &str) -> Self {
        match s {
            "number_asc" => Self::NumberAsc,
            "issued_desc" => Self::IssuedDesc,
            _ => Self::NumberDesc,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NumberDesc => "number_desc",
            Self::NumberAsc => "number_asc",
            Self::IssuedDesc => "issued_desc",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegistryRow {
    pub record: CertificateRecord,
    pub attempts: i64,
}

#[derive(Debug, Clone)]
pub struct RegistryPage {
    pub rows: Vec<RegistryRow>,
    /// Cursor for the next page, when there is one.
    pub next: Option<String>,
}

enum Arg {
    I(i64),
    S(String),
}

struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }
}

fn where_clause(f: &RegistryFilter, sql: &mut Sql) -> String {
    let mut conds = vec!["code <> ''".to_string()];
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let p = sql.arg(Arg::S(format!(
            "%{}%",
            q.to_lowercase().replace(['%', '_'], "")
        )));
        // The narrow (search_text, number) index is scanned instead of whole rows.
        conds.push(format!(
            "number IN (SELECT number FROM certificates WHERE search_text LIKE {p})"
        ));
    }
    match f.status.as_deref() {
        Some("revoked") => conds.push("revoked_at IS NOT NULL".into()),
        Some(s) if !s.is_empty() => {
            let p = sql.arg(Arg::S(s.to_string()));
            conds.push(format!("status = {p} AND revoked_at IS NULL"));
        }
        _ => {}
    }
    if let Some(e) = f.event_id {
        let p = sql.arg(Arg::I(e));
        conds.push(format!("event_id = {p}"));
    }
    if let Some(from) = f.from_ms {
        let p = sql.arg(Arg::I(from));
        conds.push(format!("issued_at >= {p}"));
    }
    if let Some(to) = f.to_ms {
        let p = sql.arg(Arg::I(to));
        conds.push(format!("issued_at < {p}"));
    }
    conds.join(" AND ")
}

/// Problem rows (never rendered) have an empty code and are listed too.
fn where_all(f: &RegistryFilter, sql: &mut Sql) -> String {
    where_clause(f, sql)
        .replacen("code <> '' AND ", "", 1)
        .replacen("code <> ''", "1 = 1", 1)
}

impl Store {
    pub async fn registry_page(
        &self,
        f: &RegistryFilter,
        sort: RegistrySort,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<RegistryPage> {
        let mut sql = Sql {
            text: String::new(),
            args: Vec::new(),
        };
        let mut cond = where_all(f, &mut sql);
        let order = match sort {
            RegistrySort::NumberDesc => "number DESC",
            RegistrySort::NumberAsc => "number ASC",
            // Sorting by issue date lists issued certificates only: it walks the (issued_at, number) index.
            RegistrySort::IssuedDesc => "issued_at DESC, number DESC",
        };
        if sort == RegistrySort::IssuedDesc {
            cond.push_str(" AND issued_at IS NOT NULL");
        }
        if let Some(cursor) = after {
            match sort {
                RegistrySort::NumberDesc | RegistrySort::NumberAsc => {
                    if let Ok(n) = cursor.parse::<i64>() {
                        let p = sql.arg(Arg::I(n));
                        let op = if sort == RegistrySort::NumberAsc {
                            ">"
                        } else {
                            "<"
                        };
                        cond.push_str(&format!(" AND number {op} {p}"));
                    }
                }
                RegistrySort::IssuedDesc => {
                    if let Some((t, n)) = cursor.split_once(':')
                        && let (Ok(t), Ok(n)) = (t.parse::<i64>(), n.parse::<i64>())
                    {
                        let pt = sql.arg(Arg::I(t));
                        let pn = sql.arg(Arg::I(n));
                        cond.push_str(&format!(
                            " AND (issued_at < {pt} OR (issued_at = {pt} AND number < {pn}))"
                        ));
                    }
                }
            }
        }
        let p = sql.arg(Arg::I(limit + 1));
        sql.text = format!(
            "SELECT {COLUMNS}, (SELECT CAST(COALESCE(SUM(j.attempts), 0) AS BIGINT) FROM jobs j \
             WHERE j.participant_id = certificates.number) AS attempts \
             FROM certificates WHERE {cond} ORDER BY {order} LIMIT {p}"
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), sql.args)
            .fetch_all(self.pool())
            .await
            .context("failed to list certificates")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(RegistryRow {
                record: from_row(r)?,
                attempts: r.try_get("attempts")?,
            });
        }
        let next = if out.len() as i64 > limit {
            out.truncate(limit as usize);
            out.last().map(|last| match sort {
                RegistrySort::IssuedDesc => format!(
                    "{}:{}",
                    last.record.issued_at.unwrap_or(0),
                    last.record.snapshot.number
                ),
                _ => last.record.snapshot.number.to_string(),
            })
        } else {
            None
        };
        Ok(RegistryPage { rows: out, next })
    }

    /// Rows per status for the filter (revoked counted apart), for the counters above the list.
    pub async fn registry_counts(&self, f: &RegistryFilter) -> anyhow::Result<Vec<(String, i64)>> {
        let mut base = f.clone();
        base.status = None;
        let mut sql = Sql {
            text: String::new(),
            args: Vec::new(),
        };
        let cond = where_all(&base, &mut sql);
        sql.text = format!(
            "SELECT CASE WHEN revoked_at IS NOT NULL THEN 'revoked' ELSE status END AS s, \
             COUNT(*) AS n FROM certificates WHERE {cond} GROUP BY 1"
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql.text.clone())), sql.args)
            .fetch_all(self.pool())
            .await
            .context("failed to count certificates")?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("s")?, r.try_get::<i64, _>("n")?)))
            .collect()
    }

    /// Events seen in the registry, for the filter: (id, printed name).
    pub async fn registry_events(&self) -> anyhow::Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT event_id, MAX(event_title) AS title FROM certificates \
             WHERE event_id IS NOT NULL GROUP BY event_id ORDER BY event_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("event_id")?, r.try_get("title")?)))
            .collect()
    }
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            Arg::I(i) => q.bind(i),
            Arg::S(s) => q.bind(s),
        };
    }
    q
}
