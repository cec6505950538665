//! The route table: run name → run id, state and endpoints.
//!
//! Owns: validation of what the daemon registers, and a snapshot structure that request
//! handling reads without locks (an `ArcSwap` of an immutable map; writers copy, change and
//! swap under a mutex). Never persists anything: the daemon keeps routes in state.db and
//! re-registers them after a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::host::is_dns_label;

/// Whether a run's services can be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteState {
    /// The run's sandbox is up: requests are forwarded.
    Running,
    /// The run exists but its sandbox is not running: requests get 503.
    Stopped,
}

impl RouteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteState::Running => "running",
            RouteState::Stopped => "stopped",
        }
    }
}

/// One run's routes, as the daemon registers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRoute {
    /// The run's name: a DNS label (`myapp` in `web.myapp.localhost`).
    pub name: String,
    /// The run's id (`run_<12 hex>`), handed to the [`Dialer`](crate::Dialer).
    pub run_id: String,
    /// Endpoint name (a DNS label) → TCP port on the sandbox's loopback.
    pub endpoints: BTreeMap<String, u16>,
    pub state: RouteState,
}

/// A route the daemon tried to register is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("run name \"{0}\" is not a DNS label (a-z, 0-9 and '-', at most 63 characters)")]
    InvalidRunName(String),
    #[error("endpoint name \"{0}\" is not a DNS label (a-z, 0-9 and '-', at most 63 characters)")]
    InvalidEndpoint(String),
    #[error("endpoint \"{endpoint}\" has port 0; ports are 1-65535")]
    InvalidPort { endpoint: String },
    #[error("run id \"{0}\" may only contain a-z, A-Z, 0-9, '_' and '-'")]
    InvalidRunId(String),
    #[error("the name \"{name}\" is routed to running run {run_id}")]
    NameTaken { name: String, run_id: String },
}

impl RouteError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            RouteError::InvalidRunName(_) | RouteError::InvalidEndpoint(_) => {
                Some("names appear in URLs such as http://web.myapp.localhost:8080")
            }
            RouteError::InvalidPort { .. } => Some("use a port such as `-p web=3000`"),
            RouteError::NameTaken { .. } => Some("stop or remove that run first"),
            RouteError::InvalidRunId(_) => None,
        }
    }
}

/// The table as request handling sees it.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) runs: HashMap<Box<str>, Arc<Entry>>,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) route: RunRoute,
    /// Endpoints in name order, each with the pool authority `run_id:port` prebuilt.
    pub(crate) endpoints: Vec<Endpoint>,
}

#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) name: Box<str>,
    pub(crate) port: u16,
    pub(crate) authority: http::uri::Authority,
}

pub(crate) struct Routes {
    current: ArcSwap<Table>,
    write: Mutex<()>,
}

fn valid_run_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

impl Routes {
    pub(crate) fn new() -> Routes {
        Routes {
            current: ArcSwap::from_pointee(Table::default()),
            write: Mutex::new(()),
        }
    }

    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Table>> {
        self.current.load()
    }

    fn update<R>(&self, f: impl FnOnce(&mut HashMap<Box<str>, Arc<Entry>>) -> R) -> R {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut runs = self.current.load().runs.clone();
        let r = f(&mut runs);
        self.current.store(Arc::new(Table { runs }));
        r
    }

    pub(crate) fn upsert(&self, route: RunRoute) -> Result<(), RouteError> {
        if !is_dns_label(&route.name) {
            return Err(RouteError::InvalidRunName(route.name));
        }
        if !valid_run_id(&route.run_id) {
            return Err(RouteError::InvalidRunId(route.run_id));
        }
        let mut endpoints = Vec::with_capacity(route.endpoints.len());
        for (name, &port) in &route.endpoints {
            if !is_dns_label(name) {
                return Err(RouteError::InvalidEndpoint(name.clone()));
            }
            if port == 0 {
                return Err(RouteError::InvalidPort {
                    endpoint: name.clone(),
                });
            }
            let authority = format!("{}:{port}", route.run_id)
                .parse()
                .map_err(|_| RouteError::InvalidRunId(route.run_id.clone()))?;
            endpoints.push(Endpoint {
                name: name.as_str().into(),
                port,
                authority,
            });
        }
        self.update(|runs| {
            if let Some(old) = runs.get(route.name.as_str())
                && old.route.run_id != route.run_id
                && old.route.state == RouteState::Running
            {
                return Err(RouteError::NameTaken {
                    name: route.name.clone(),
                    run_id: old.route.run_id.clone(),
                });
            }
            runs.insert(
                route.name.as_str().into(),
                Arc::new(Entry { route, endpoints }),
            );
            Ok(())
        })
    }

    pub(crate) fn remove(&self, name: &str) -> Option<RunRoute> {
        self.update(|runs| runs.remove(name).map(|e| e.route.clone()))
    }

    pub(crate) fn remove_run_id(&self, run_id: &str) -> Option<RunRoute> {
        self.update(|runs| {
            let name = runs
                .iter()
                .find(|(_, e)| e.route.run_id == run_id)
                .map(|(n, _)| n.clone())?;
            runs.remove(&name).map(|e| e.route.clone())
        })
    }

    pub(crate) fn set_state(&self, name: &str, state: RouteState) -> bool {
        self.update(|runs| {
            let Some(old) = runs.get(name) else {
                return false;
            };
            let mut route = old.route.clone();
            route.state = state;
            let endpoints = old
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    name: e.name.clone(),
                    port: e.port,
                    authority: e.authority.clone(),
                })
                .collect();
            runs.insert(name.into(), Arc::new(Entry { route, endpoints }));
            true
        })
    }

    pub(crate) fn snapshot(&self) -> Vec<RunRoute> {
        let mut v: Vec<RunRoute> = self.load().runs.values().map(|e| e.route.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, id: &str, eps: &[(&str, u16)]) -> RunRoute {
        RunRoute {
            name: name.into(),
            run_id: id.into(),
            endpoints: eps.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
            state: RouteState::Running,
        }
    }

    #[test]
    fn validation() {
        let r = Routes::new();
        assert!(matches!(
            r.upsert(route("My_App", "run_1", &[])),
            Err(RouteError::InvalidRunName(_))
        ));
        assert!(matches!(
            r.upsert(route("app", "run 1", &[])),
            Err(RouteError::InvalidRunId(_))
        ));
        assert!(matches!(
            r.upsert(route("app", "run_1", &[("Web", 3000)])),
            Err(RouteError::InvalidEndpoint(_))
        ));
        assert!(matches!(
            r.upsert(route("app", "run_1", &[("web", 0)])),
            Err(RouteError::InvalidPort { .. })
        ));
        assert!(r.snapshot().is_empty());
    }

    #[test]
    fn name_reuse_and_state() {
        let r = Routes::new();
        r.upsert(route("app", "run_1", &[("web", 3000)])).unwrap();
        // Same run again: an update.
        r.upsert(route("app", "run_1", &[("web", 3001)])).unwrap();
        assert_eq!(r.snapshot()[0].endpoints["web"], 3001);
        // Another run cannot take a running run's name…
        assert!(matches!(
            r.upsert(route("app", "run_2", &[("web", 3000)])),
            Err(RouteError::NameTaken { .. })
        ));
        // …but can once it has stopped or been removed.
        assert!(r.set_state("app", RouteState::Stopped));
        r.upsert(route("app", "run_2", &[("web", 3000)])).unwrap();
        assert_eq!(r.remove_run_id("run_2").unwrap().name, "app");
        assert!(r.remove("app").is_none());
        assert!(!r.set_state("app", RouteState::Running));
    }
}
