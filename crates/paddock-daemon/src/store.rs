//! `state.db`: SQLite in WAL mode, the daemon its only writer. Schema changes are ordered
//! migrations keyed by `PRAGMA user_version`.
//!
//! The daemon is also its only reader (one daemon per home, `daemon.lock`; the CLI never
//! opens it), so the connection holds the database in exclusive locking mode: no file
//! lock is taken and released around every statement, and the WAL index lives in memory
//! instead of a shared `-shm` file. Another process (`sqlite3 state.db`) gets "database is
//! locked" while the daemon runs.

use std::path::Path;
use std::sync::Mutex;

use paddock_api::{Limits, Mount, Run, RunState, WorkspaceMode};
use rusqlite::{Connection, OptionalExtension, params};

use crate::DaemonError;

/// Ordered schema migrations; index + 1 is the `user_version` after applying it.
const MIGRATIONS: &[&str] = &[
    // 1: runs
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        workspace TEXT NOT NULL,
        command TEXT NOT NULL,
        runtime TEXT NOT NULL,
        state TEXT NOT NULL,
        workspace_mode TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        finished_ms INTEGER,
        exit_code INTEGER,
        reason TEXT,
        tty INTEGER NOT NULL DEFAULT 0,
        limits TEXT NOT NULL DEFAULT '{}',
        mounts TEXT NOT NULL DEFAULT '[]',
        config TEXT NOT NULL DEFAULT 'null',
        config_sources TEXT NOT NULL DEFAULT '[]',
        applied INTEGER NOT NULL DEFAULT 0,
        spec TEXT,
        handle TEXT
    );
    CREATE INDEX runs_name ON runs(name);
    CREATE INDEX runs_state ON runs(state);",
    // 2: hostname routing (issue 6): a run's named ports, and the router's table (one row
    // per run that has endpoints; gone with its run).
    "ALTER TABLE runs ADD COLUMN ports TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE routes (
        run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        endpoints TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX routes_name ON routes(name);",
    // 3: a run's network plan (egress: its `network:` section and grant placeholders), kept
    // here instead of in a file of its directory, so a create writes no file.
    "ALTER TABLE runs ADD COLUMN net_plan TEXT;",
    // 4: the agent preset of a run (`paddock claude`, `run --agent`)
    "ALTER TABLE runs ADD COLUMN agent TEXT;",
    // 5: a worktree run's git worktree (`paddock run --wt`; JSON, see `worktree::Worktree`).
    "ALTER TABLE runs ADD COLUMN worktree TEXT;",
];

/// A run as stored, with the daemon-private parts the API does not show.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run: Run,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    /// The sandbox spec (JSON), kept so a `created` run can be started later.
    pub spec: Option<String>,
    /// The runtime's handle (JSON), kept to find the sandbox again after a restart.
    pub handle: Option<String>,
    /// A worktree run's git worktree.
    pub worktree: Option<crate::worktree::Worktree>,
}

impl RunRecord {
    /// The run as [`Store::get`] would read this record back once inserted, without reading
    /// it: what state.db derives on the way (the workspace stored as text, the times shown
    /// as RFC 3339) is derived the same way here.
    pub fn into_read(self) -> Run {
        let mut run = self.run;
        run.workspace = run.workspace.to_string_lossy().into_owned().into();
        run.created_at = ms_to_rfc3339(self.created_ms);
        run.started_at = self.started_ms.map(ms_to_rfc3339);
        run.urls = Default::default();
        run
    }
}

/// The state store.
pub struct Store {
    conn: Mutex<Connection>,
}

/// How a stored time is shown (`created_at`, event `ts` and friends): RFC 3339 in UTC
/// with exactly three fraction digits, so every such string has one width and sorts as
/// text in time order.
pub fn ms_to_rfc3339(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(FORMAT).unwrap_or_default()
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn now_rfc3339() -> String {
    ms_to_rfc3339(now_ms())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, DaemonError> {
        let conn = Connection::open(path)?;
        // Before the first access in WAL mode: the WAL index then never uses shared memory.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), DaemonError> {
        let mut conn = self.conn.lock().expect("store lock poisoned");
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(DaemonError::Config {
                message: format!(
                    "state.db has schema version {version}, newer than this paddock understands ({})",
                    MIGRATIONS.len()
                ),
                hint: "run the newer paddock, or move state.db aside".into(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Insert a new run, with its network plan (see [`Store::net_plan`]); a statement
    /// prepared once: it is on the path of every create.
    pub fn insert(&self, rec: &RunRecord, net_plan: &str) -> Result<(), DaemonError> {
        let r = &rec.run;
        let conn = self.conn.lock().expect("store lock poisoned");
        let mut stmt = conn.prepare_cached(
            "INSERT INTO runs (id, name, workspace, command, runtime, state, workspace_mode, created_ms,
                tty, limits, mounts, config, config_sources, applied, spec, ports, net_plan, agent,
                worktree)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        )?;
        stmt.execute(params![
            r.id,
            r.name,
            r.workspace.to_string_lossy(),
            json(&r.command),
            r.runtime,
            r.state.as_str(),
            r.workspace_mode.as_str(),
            rec.created_ms,
            r.tty,
            json(&r.limits),
            json(&r.mounts),
            json(&r.config),
            json(&r.config_sources),
            r.applied,
            rec.spec,
            json(&r.ports),
            net_plan,
            r.agent,
            rec.worktree.as_ref().map(json),
        ])?;
        Ok(())
    }

    /// A run's network plan as [`Store::insert`] kept it (JSON); `None` for runs created
    /// before plans were kept here (or an unknown id).
    pub fn net_plan(&self, id: &str) -> Result<Option<String>, DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        let mut stmt = conn.prepare_cached("SELECT net_plan FROM runs WHERE id = ?1")?;
        Ok(stmt
            .query_row(params![id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    /// Persist a state transition (and its exit data).
    pub fn set_state(
        &self,
        id: &str,
        state: RunState,
        exit_code: Option<i32>,
        reason: Option<&str>,
    ) -> Result<(), DaemonError> {
        let now = now_ms();
        let conn = self.conn.lock().expect("store lock poisoned");
        conn.execute(
            "UPDATE runs SET state = ?2,
                started_ms = CASE WHEN ?2 = 'starting' AND started_ms IS NULL THEN ?3 ELSE started_ms END,
                finished_ms = CASE WHEN ?2 IN ('stopped','failed') THEN ?3 ELSE finished_ms END,
                exit_code = COALESCE(?4, exit_code),
                reason = COALESCE(?5, reason)
             WHERE id = ?1",
            params![id, state.as_str(), now, exit_code, reason],
        )?;
        Ok(())
    }

    pub fn set_handle(&self, id: &str, handle: &str) -> Result<(), DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        conn.execute(
            "UPDATE runs SET handle = ?2 WHERE id = ?1",
            params![id, handle],
        )?;
        Ok(())
    }

    pub fn set_applied(&self, id: &str, applied: bool) -> Result<(), DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        conn.execute(
            "UPDATE runs SET applied = ?2 WHERE id = ?1",
            params![id, applied],
        )?;
        Ok(())
    }

    pub fn delete(&self, id: &str) -> Result<(), DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        conn.execute("DELETE FROM runs WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<RunRecord>, DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"))?;
        Ok(stmt.query_row(params![id], row_to_record).optional()?)
    }

    /// All runs, oldest first.
    pub fn list(&self) -> Result<Vec<RunRecord>, DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map([], row_to_record)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Runs that have not ended (indexed by state; the history of ended runs is not read).
    pub fn live(&self) -> Result<Vec<RunRecord>, DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs WHERE state NOT IN ('stopped', 'failed') ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map([], row_to_record)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The id of the run named `name` that has not ended, if any: what a name check needs
    /// (one index lookup, however many runs there are).
    pub fn live_run_named(&self, name: &str) -> Result<Option<String>, DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM runs WHERE name = ?1 AND state NOT IN ('stopped', 'failed') LIMIT 1",
        )?;
        Ok(stmt.query_row(params![name], |r| r.get(0)).optional()?)
    }

    /// Runs whose id starts with `prefix`, with or without the `run_` part.
    pub fn with_id_prefix(&self, prefix: &str) -> Result<Vec<RunRecord>, DaemonError> {
        self.query(
            "substr(id, 1, length(?1)) = ?1 OR substr(id, 5, length(?1)) = ?1",
            prefix,
        )
    }

    /// Runs named `name` (live or ended).
    pub fn with_name(&self, name: &str) -> Result<Vec<RunRecord>, DaemonError> {
        self.query("name = ?1", name)
    }

    fn query(&self, condition: &str, arg: &str) -> Result<Vec<RunRecord>, DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs WHERE {condition} ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map(params![arg], row_to_record)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// (total, not ended) run counts, without reading the rows.
    pub fn counts(&self) -> Result<(u64, u64), DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        Ok(conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(state NOT IN ('stopped', 'failed')), 0) FROM runs",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// Flush the WAL into the main database (on shutdown).
    pub fn checkpoint(&self) -> Result<(), DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

/// One row of the `routes` table: the router's entry for a run with endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    pub run_id: String,
    pub name: String,
    pub endpoints: std::collections::BTreeMap<String, u16>,
    /// `running` or `stopped`.
    pub state: String,
    pub updated_ms: i64,
}

/// The router's table (hostname routing). Written only by `crate::routing`.
impl Store {
    /// Insert or replace the route of `row.run_id`.
    pub fn put_route(&self, row: &RouteRow) -> Result<(), DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        conn.execute(
            "INSERT INTO routes (run_id, name, endpoints, state, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(run_id) DO UPDATE SET name = ?2, endpoints = ?3, state = ?4,
                updated_ms = ?5",
            params![
                row.run_id,
                row.name,
                json(&row.endpoints),
                row.state,
                row.updated_ms
            ],
        )?;
        Ok(())
    }

    /// Set the state of a run's route; false when it has none.
    pub fn set_route_state(&self, run_id: &str, state: &str) -> Result<bool, DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        let n = conn.execute(
            "UPDATE routes SET state = ?2, updated_ms = ?3 WHERE run_id = ?1",
            params![run_id, state, now_ms()],
        )?;
        Ok(n > 0)
    }

    pub fn delete_route(&self, run_id: &str) -> Result<(), DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        conn.execute("DELETE FROM routes WHERE run_id = ?1", params![run_id])?;
        Ok(())
    }

    /// Every route, oldest change first.
    pub fn routes(&self) -> Result<Vec<RouteRow>, DaemonError> {
        let conn = self.conn.lock().expect("store lock poisoned");
        let mut stmt = conn.prepare_cached(
            "SELECT run_id, name, endpoints, state, updated_ms FROM routes
             ORDER BY updated_ms, run_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RouteRow {
                run_id: r.get(0)?,
                name: r.get(1)?,
                endpoints: parse(&r.get::<_, String>(2)?),
                state: r.get(3)?,
                updated_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

const COLUMNS: &str = "id, name, workspace, command, runtime, state, workspace_mode, created_ms, started_ms,
    finished_ms, exit_code, reason, tty, limits, mounts, config, config_sources, applied, spec, handle,
    ports, agent, worktree";

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn parse<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let state: String = row.get(5)?;
    let mode: String = row.get(6)?;
    let created_ms: i64 = row.get(7)?;
    let started_ms: Option<i64> = row.get(8)?;
    let finished_ms: Option<i64> = row.get(9)?;
    let run = Run {
        id: row.get(0)?,
        name: row.get(1)?,
        workspace: row.get::<_, String>(2)?.into(),
        command: parse(&row.get::<_, String>(3)?),
        runtime: row.get(4)?,
        state: RunState::parse(&state).unwrap_or(RunState::Failed),
        workspace_mode: if mode == "bind" {
            WorkspaceMode::Bind
        } else {
            WorkspaceMode::Overlay
        },
        created_at: ms_to_rfc3339(created_ms),
        started_at: started_ms.map(ms_to_rfc3339),
        finished_at: finished_ms.map(ms_to_rfc3339),
        exit_code: row.get(10)?,
        reason: row.get(11)?,
        tty: row.get(12)?,
        limits: parse::<Limits>(&row.get::<_, String>(13)?),
        mounts: parse::<Vec<Mount>>(&row.get::<_, String>(14)?),
        config: serde_json::from_str(&row.get::<_, String>(15)?).unwrap_or(serde_json::Value::Null),
        config_sources: parse(&row.get::<_, String>(16)?),
        applied: row.get(17)?,
        ports: parse(&row.get::<_, String>(20)?),
        urls: Default::default(),
        agent: row.get(21)?,
        branch: None,
        worktree: None,
    };
    let worktree: Option<crate::worktree::Worktree> = row
        .get::<_, Option<String>>(22)?
        .and_then(|s| serde_json::from_str(&s).ok());
    let mut run = run;
    if let Some(w) = &worktree {
        run.branch = Some(w.branch.clone());
        run.worktree = Some(w.path.clone());
    }
    Ok(RunRecord {
        run,
        created_ms,
        started_ms,
        spec: row.get(18)?,
        handle: row.get(19)?,
        worktree,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_one_width() {
        assert_eq!(ms_to_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(ms_to_rfc3339(1_796_642_484_880), "2026-12-07T11:21:24.880Z");
        assert_eq!(ms_to_rfc3339(1_796_642_484_007), "2026-12-07T11:21:24.007Z");
    }

    fn sample(id: &str, name: &str) -> RunRecord {
        RunRecord {
            run: Run {
                id: id.into(),
                name: name.into(),
                workspace: "/tmp".into(),
                command: vec!["true".into()],
                runtime: "native".into(),
                state: RunState::Created,
                workspace_mode: WorkspaceMode::Overlay,
                created_at: String::new(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                reason: None,
                tty: false,
                limits: Limits::default(),
                mounts: vec![],
                config: serde_json::Value::Null,
                config_sources: vec![],
                applied: false,
                ports: Default::default(),
                urls: Default::default(),
                agent: None,
                branch: None,
                worktree: None,
            },
            created_ms: now_ms(),
            started_ms: None,
            spec: None,
            handle: None,
            worktree: None,
        }
    }

    #[test]
    fn runs_survive_reopen_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = Store::open(&path).unwrap();
            s.insert(&sample("run_000000000001", "brave-otter"), "{}")
                .unwrap();
            s.set_state("run_000000000001", RunState::Starting, None, None)
                .unwrap(); // sets started_at
            s.set_state("run_000000000001", RunState::Running, None, None)
                .unwrap();
            s.set_state("run_000000000001", RunState::Stopped, Some(3), None)
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let r = s.get("run_000000000001").unwrap().unwrap();
        assert_eq!(r.run.state, RunState::Stopped);
        assert_eq!(r.run.exit_code, Some(3));
        assert!(r.run.started_at.is_some() && r.run.finished_at.is_some());
        assert_eq!(s.list().unwrap().len(), 1);
        assert_eq!(s.counts().unwrap(), (1, 0));
        assert!(s.live().unwrap().is_empty());
        s.insert(&sample("run_000000000002", "calm-heron"), "{}")
            .unwrap();
        assert_eq!(s.counts().unwrap(), (2, 1));
        assert_eq!(s.live().unwrap()[0].run.name, "calm-heron");
    }

    #[test]
    fn lookups_by_id_prefix_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        s.insert(&sample("run_abc000000001", "otter"), "{}")
            .unwrap();
        s.insert(&sample("run_abd000000002", "heron"), "{}")
            .unwrap();
        let ids = |v: Vec<RunRecord>| v.into_iter().map(|r| r.run.id).collect::<Vec<_>>();
        assert_eq!(ids(s.with_id_prefix("run_ab").unwrap()).len(), 2);
        assert_eq!(ids(s.with_id_prefix("abc").unwrap()), ["run_abc000000001"]);
        assert_eq!(
            ids(s.with_id_prefix("run_abd").unwrap()),
            ["run_abd000000002"]
        );
        assert!(s.with_id_prefix("zz").unwrap().is_empty());
        assert_eq!(ids(s.with_name("heron").unwrap()), ["run_abd000000002"]);
        assert!(s.with_name("her").unwrap().is_empty());
    }

    #[test]
    fn ports_and_routes_persist_and_routes_go_with_their_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut rec = sample("run_000000000001", "app");
        rec.run.ports = [("web".to_string(), 3000), ("api".to_string(), 8081)].into();
        let row = RouteRow {
            run_id: rec.run.id.clone(),
            name: "app".into(),
            endpoints: rec.run.ports.clone(),
            state: "running".into(),
            updated_ms: now_ms(),
        };
        {
            let s = Store::open(&path).unwrap();
            s.insert(&rec, "{}").unwrap();
            s.insert(&sample("run_000000000002", "other"), "{}")
                .unwrap();
            s.put_route(&row).unwrap();
            // Replacing keeps one row per run.
            s.put_route(&row).unwrap();
            assert!(s.set_route_state(&rec.run.id, "stopped").unwrap());
            assert!(!s.set_route_state("run_000000000002", "stopped").unwrap());
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.get(&rec.run.id).unwrap().unwrap().run.ports,
            rec.run.ports
        );
        assert!(
            s.get("run_000000000002")
                .unwrap()
                .unwrap()
                .run
                .ports
                .is_empty()
        );
        let routes = s.routes().unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].endpoints, rec.run.ports);
        assert_eq!(routes[0].state, "stopped");
        // A removed run takes its route with it.
        s.delete(&rec.run.id).unwrap();
        assert!(s.routes().unwrap().is_empty());
    }

    #[test]
    fn version_1_databases_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // A database as the first release left it, with a run in it.
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            tx.pragma_update(None, "user_version", 1).unwrap();
            tx.execute(
                "INSERT INTO runs (id, name, workspace, command, runtime, state, workspace_mode,
                    created_ms) VALUES ('run_000000000009', 'old', '/tmp', '[\"true\"]', 'native',
                    'stopped', 'overlay', 1)",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let s = Store::open(&path).unwrap();
        let old = s.get("run_000000000009").unwrap().unwrap();
        assert_eq!(old.run.name, "old");
        assert!(old.run.ports.is_empty());
        assert!(s.routes().unwrap().is_empty());
        let conn = s.conn.lock().unwrap();
        let v: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len());
    }

    #[test]
    fn a_record_as_read_is_what_the_store_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        let mut rec = sample("run_000000000007", "keen-lynx");
        rec.created_ms = 1_767_225_600_123;
        rec.run.command = vec!["sh".into(), "-c".into(), "echo \"hi\" ünï".into()];
        rec.run.workspace = "/tmp/some where".into();
        rec.run.workspace_mode = WorkspaceMode::Bind;
        rec.run.tty = true;
        rec.run.limits = Limits {
            memory_bytes: Some(1 << 30),
            pids: Some(64),
            cpus: Some(1.5),
        };
        rec.run.mounts = vec![Mount {
            source: "/srv/data".into(),
            target: "/data".into(),
            read_only: true,
        }];
        rec.run.config =
            serde_json::json!({"name": "x", "limits": {"cpus": 0.25}, "env": {"A": "1"}});
        rec.run.config_sources = vec!["/tmp/paddock.yaml".into()];
        rec.run.ports = [("web".to_string(), 8080u16)].into_iter().collect();
        rec.spec = Some("{}".into());
        s.insert(&rec, "{}").unwrap();
        let read = s.get("run_000000000007").unwrap().unwrap().run;
        assert_eq!(rec.into_read(), read);
    }

    #[test]
    fn the_daemon_holds_state_db_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = Store::open(&path).unwrap();
        s.insert(&sample("run_000000000001", "lone-owl"), "{}")
            .unwrap();
        // Another connection cannot even read while the store is open...
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        assert!(
            other
                .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0))
                .is_err()
        );
        drop(other);
        // ...and sees everything once it is closed.
        drop(s);
        let other = Connection::open(&path).unwrap();
        let n: i64 = other
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 999)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(DaemonError::Config { .. })
        ));
    }
}
