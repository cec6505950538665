//! `paddock.yaml` and the user config: parsing, checking and layering
//! (`paddock_config::load_layers`).
//!
//! Input: config text. A NUL byte (never valid in a config file) splits it into a user
//! layer and a project layer laid over it; without one the whole input is tried as a
//! project file and as a user file.
//!
//! Properties:
//! - never panics, whatever the bytes (errors are `ConfigError`s);
//! - an error names the file, and its line:column lies inside the text;
//! - a project file that loads also loads as a user file, to the same config (a user
//!   config may set everything a project may);
//! - a layered load that succeeds implies each layer loads on its own, and laying an
//!   empty layer over a config changes nothing;
//! - the loaded config, and its `network:` section (which the CLI sends to the daemon as
//!   JSON and the daemon parses back), round-trip through JSON unchanged.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use paddock_config::{Config, ConfigError, ConfigLayer, NetworkConfig, Origin, load_layers};

const PROJECT: &str = "/fuzz/ws/paddock.yaml";
const USER: &str = "/fuzz/home/.config/paddock/config.yaml";

fn origin(path: &str, layer: ConfigLayer) -> Origin {
    Origin {
        path: PathBuf::from(path),
        layer,
        home: Some(PathBuf::from("/fuzz/home")),
    }
}

/// Where an error may point: within the text (one past the end at most).
fn check_error(e: &ConfigError, texts: &[(&[u8], &str)]) {
    let shown = e.to_string();
    let path = e.path().to_path_buf();
    assert!(
        shown.starts_with(&path.display().to_string()),
        "error does not start with its file: {shown}"
    );
    let Some((bytes, _)) = texts.iter().find(|(_, p)| Path::new(p) == path) else {
        panic!("error names a file that was not loaded: {shown}");
    };
    if let Some((line, column)) = e.position() {
        assert!(
            line >= 1 && column >= 1,
            "position {line}:{column}: {shown}"
        );
        // Lines as YAML counts them: LF, CR LF and a lone CR each end one.
        let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
        let lines = text.split(['\n', '\r']).count();
        assert!(
            line as usize <= lines + 1,
            "line {line} past the end ({lines} lines): {shown}"
        );
    }
    let _ = e.display_with_hint();
    let _ = e.kind();
    let _ = e.message();
}

fn round_trip(cfg: &Config) {
    let json = serde_json::to_value(cfg).expect("a config serialises");
    let back: Config = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("config JSON does not parse back: {e}\n{json}"));
    assert_eq!(&back, cfg, "config changed through JSON");
    // What the CLI puts in `CreateRun.network` and the daemon reads back.
    let net = serde_json::to_value(&cfg.network).expect("network serialises");
    let back: NetworkConfig = serde_json::from_value(net.clone())
        .unwrap_or_else(|e| panic!("network JSON does not parse back: {e}\n{net}"));
    assert_eq!(back, cfg.network, "network changed through JSON");
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    match data.iter().position(|b| *b == 0) {
        None => {
            let project = load_layers(&[(data, origin(PROJECT, ConfigLayer::Project))]);
            let user = load_layers(&[(data, origin(PROJECT, ConfigLayer::User))]);
            match (&project, &user) {
                (Ok(p), Ok(u)) => {
                    assert_eq!(p, u, "a project file loads differently as a user file");
                    round_trip(p);
                    // An empty layer over it changes nothing.
                    let over = load_layers(&[
                        (data, origin(PROJECT, ConfigLayer::User)),
                        (b"", origin(USER, ConfigLayer::Project)),
                    ])
                    .expect("an empty project layer cannot fail");
                    assert_eq!(&over, u, "an empty layer changed the config");
                }
                (Ok(_), Err(e)) => panic!("loads as a project file but not as a user file: {e}"),
                (Err(e), Ok(u)) => {
                    check_error(e, &[(data, PROJECT)]);
                    round_trip(u);
                }
                (Err(p), Err(u)) => {
                    check_error(p, &[(data, PROJECT)]);
                    check_error(u, &[(data, PROJECT)]);
                }
            }
        }
        Some(split) => {
            let (user, project) = (&data[..split], &data[split + 1..]);
            let layered = load_layers(&[
                (user, origin(USER, ConfigLayer::User)),
                (project, origin(PROJECT, ConfigLayer::Project)),
            ]);
            match layered {
                Ok(cfg) => {
                    round_trip(&cfg);
                    assert!(
                        load_layers(&[(user, origin(USER, ConfigLayer::User))]).is_ok(),
                        "layers load together but the user layer alone does not"
                    );
                    assert!(
                        load_layers(&[(project, origin(PROJECT, ConfigLayer::Project))]).is_ok(),
                        "layers load together but the project layer alone does not"
                    );
                }
                Err(e) => check_error(&e, &[(user, USER), (project, PROJECT)]),
            }
        }
    }
});
