//! The `/v1` wire types (`paddock_api`): request bodies the daemon parses (CreateRun,
//! StopRequest, ApplyRequest, ExecRequest, PutGrant, SnapshotRequest, RollbackRequest)
//! and the answers the CLI parses.
//!
//! Input: one selector byte (which type), then JSON.
//!
//! Properties:
//! - parsing never panics (bad bodies are serde errors);
//! - whatever parses round-trips: serialise, parse again, equal; and serialising is stable
//!   (the second encoding is byte-for-byte the first);
//! - a CreateRun's `network` value, as the daemon parses it into paddock-config's
//!   `NetworkConfig`, round-trips too;
//! - `PutGrant`'s `Debug` never shows the credential.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use paddock_api::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(json: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(json).ok()?;
    let once = serde_json::to_vec(&v).expect("a parsed body serialises");
    let back: T = serde_json::from_slice(&once).unwrap_or_else(|e| {
        panic!(
            "serialised body does not parse back: {e}\n{}",
            String::from_utf8_lossy(&once)
        )
    });
    assert_eq!(back, v, "body changed through JSON");
    let twice = serde_json::to_vec(&back).expect("serialises");
    assert_eq!(once, twice, "serialisation is not stable");
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 29 {
        0 => {
            if let Some(req) = round_trip::<CreateRun>(json) {
                // The daemon reads `network` into paddock-config's NetworkConfig.
                if let Ok(net) =
                    serde_json::from_value::<paddock_config::NetworkConfig>(req.network.clone())
                {
                    let v = serde_json::to_value(&net).expect("network serialises");
                    let back: paddock_config::NetworkConfig = serde_json::from_value(v.clone())
                        .unwrap_or_else(|e| panic!("network does not parse back: {e}\n{v}"));
                    assert_eq!(back, net, "network changed through JSON");
                }
            }
        }
        1 => drop(round_trip::<StopRequest>(json)),
        2 => drop(round_trip::<ApplyRequest>(json)),
        3 => drop(round_trip::<ExecRequest>(json)),
        4 => {
            if let Some(g) = round_trip::<PutGrant>(json) {
                // The Debug of the grant with its value replaced by one of the same length
                // must be the same text.
                let same_len = PutGrant {
                    value: "x".repeat(g.value.len()),
                    ..g.clone()
                };
                assert_eq!(
                    format!("{g:?}"),
                    format!("{same_len:?}"),
                    "PutGrant's Debug depends on the credential's content"
                );
            }
        }
        5 => drop(round_trip::<Run>(json)),
        6 => drop(round_trip::<RunList>(json)),
        7 => drop(round_trip::<WaitResult>(json)),
        8 => drop(round_trip::<ExecResult>(json)),
        9 => drop(round_trip::<LogLine>(json)),
        10 => drop(round_trip::<Health>(json)),
        11 => drop(round_trip::<Event>(json)),
        12 => drop(round_trip::<DiffResponse>(json)),
        13 => drop(round_trip::<ApplyResponse>(json)),
        14 => drop(round_trip::<AuditEntries>(json)),
        15 => drop(round_trip::<AuditKey>(json)),
        16 => drop(round_trip::<RouterStatus>(json)),
        17 => drop(round_trip::<CaCertificate>(json)),
        18 => drop(round_trip::<ErrorBody>(json)),
        19 => drop(round_trip::<GrantList>(json)),
        20 => drop(round_trip::<GrantInfo>(json)),
        21 => drop(round_trip::<PutGrantResponse>(json)),
        22 => drop(round_trip::<RevokedGrant>(json)),
        23 => drop(round_trip::<SnapshotRequest>(json)),
        24 => drop(round_trip::<RollbackRequest>(json)),
        25 => drop(round_trip::<Snapshot>(json)),
        26 => drop(round_trip::<SnapshotList>(json)),
        27 => drop(round_trip::<RollbackResponse>(json)),
        _ => {
            if let Some(s) = round_trip::<RunStateChange>(json) {
                let _ = s.to.can_become(s.from.unwrap_or(RunState::Created));
            }
        }
    }
});
