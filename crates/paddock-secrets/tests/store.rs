//! The encrypted store: round trips, tamper and swap detection, key handling, file modes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use paddock_secrets::key::KEY_LEN;
use paddock_secrets::{
    GrantKind, GrantSpec, HttpSpec, KeyBackend, KeyOrigin, KeyVault, SecretStore, SecretValue,
    SecretsError,
};
use zeroize::Zeroizing;

const GH: &str = "ghp_R3alT0kenR3alT0kenR3alT0kenR3alT0k1";
const ANT: &str = "sk-ant-api03-realrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealrealreaAA";

fn v(s: &str) -> SecretValue {
    SecretValue::new(s).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn file_store(dir: &Path) -> SecretStore {
    SecretStore::open_with(dir.join("secrets"), KeyBackend::FileOnly).unwrap()
}

#[test]
fn round_trip_list_show_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    let info = store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    assert_eq!(info.preview, "ghp_…T0k1");
    store
        .put("anthropic", GrantSpec::Anthropic, &v(ANT))
        .unwrap();
    let spec = GrantSpec::Http(
        HttpSpec::new(&["api.example.com", "*.example.org"], "X-Api-Key", None).unwrap(),
    );
    store
        .put("example", spec.clone(), &v("generic-secret-1234567890"))
        .unwrap();

    let g = store.get("github").unwrap();
    assert_eq!(g.value.expose(), GH);
    assert_eq!(g.info.kind(), GrantKind::Github);
    assert_eq!(store.get("example").unwrap().info.spec, spec);

    let names: Vec<String> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["anthropic", "example", "github"]);

    // Metadata is readable without the key: a store over the same directory with a key
    // backend that would fail still lists and shows.
    let listing = SecretStore::open_with(tmp.path().join("secrets"), KeyBackend::FileOnly)
        .unwrap()
        .info("anthropic")
        .unwrap();
    assert_eq!(listing.preview, "sk-ant-api03-…eaAA");
    assert!(
        listing
            .hosts()
            .iter()
            .any(|h| h.to_string() == "api.anthropic.com")
    );

    // Replace keeps created_at, changes the value.
    let before = store.info("github").unwrap();
    let replaced = store
        .put(
            "github",
            GrantSpec::Github,
            &v("gho_0therT0ken0therT0ken0therT0ken0ther"),
        )
        .unwrap();
    assert_eq!(replaced.created_at, before.created_at);
    assert_eq!(
        store.get("github").unwrap().value.expose(),
        "gho_0therT0ken0therT0ken0therT0ken0ther"
    );

    let revoked = store.revoke("github").unwrap().unwrap();
    assert_eq!(revoked.preview, "gho_…ther");
    assert!(matches!(
        store.get("github"),
        Err(SecretsError::NotFound { .. })
    ));
    assert!(matches!(
        store.revoke("github"),
        Err(SecretsError::NotFound { .. })
    ));
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn nothing_in_clear_on_disk_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    let dir = tmp.path().join("secrets");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("key")), 0o600);
    assert_eq!(fs::metadata(dir.join("key")).unwrap().len(), KEY_LEN as u64);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(!name.starts_with('.'), "temp file left behind: {name}");
        assert_eq!(mode(&path), 0o600, "{name}");
        let bytes = fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&GH[4..]), "{name} holds the value in clear");
    }
    // A loose existing directory is tightened.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let _ = file_store(tmp.path());
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn tampered_ciphertext_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    let path = tmp.path().join("secrets/github.grant");
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let ct = json["ciphertext"].as_str().unwrap().to_string();
    let first = if ct.starts_with('A') { 'B' } else { 'A' };
    let flipped = format!("{first}{}", &ct[1..]);
    json["ciphertext"] = flipped.into();
    fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let err = store.get("github").unwrap_err();
    assert!(matches!(err, SecretsError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("modified"));
    assert!(err.hint().unwrap().contains("revoke"));
}

#[test]
fn edited_hosts_are_detected() {
    // The metadata is the AEAD's associated data: pointing a grant at another host
    // without the key is detected.
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    let spec = GrantSpec::Http(HttpSpec::new(&["api.example.com"], "X-Api-Key", None).unwrap());
    store
        .put("example", spec, &v("generic-secret-1234567890"))
        .unwrap();
    let path = tmp.path().join("secrets/example.grant");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("api.example.com", "api.evil.com");
    fs::write(&path, text).unwrap();
    assert!(matches!(
        store.get("example"),
        Err(SecretsError::Tampered { .. })
    ));
}

#[test]
fn swapped_files_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    store.put("one", GrantSpec::Github, &v(GH)).unwrap();
    store
        .put(
            "two",
            GrantSpec::Github,
            &v("ghp_An0therAn0therAn0therAn0therAn0ther1"),
        )
        .unwrap();
    let dir = tmp.path().join("secrets");

    // Ciphertexts swapped between the two files.
    let read = |n: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(dir.join(format!("{n}.grant"))).unwrap()).unwrap()
    };
    let (mut a, mut b) = (read("one"), read("two"));
    for field in ["ciphertext", "nonce"] {
        let t = a[field].clone();
        a[field] = b[field].clone();
        b[field] = t;
    }
    fs::write(dir.join("one.grant"), serde_json::to_vec(&a).unwrap()).unwrap();
    fs::write(dir.join("two.grant"), serde_json::to_vec(&b).unwrap()).unwrap();
    assert!(matches!(
        store.get("one"),
        Err(SecretsError::Tampered { .. })
    ));
    assert!(matches!(
        store.get("two"),
        Err(SecretsError::Tampered { .. })
    ));

    // Whole files renamed.
    store.put("one", GrantSpec::Github, &v(GH)).unwrap();
    fs::rename(dir.join("one.grant"), dir.join("three.grant")).unwrap();
    let err = store.get("three").unwrap_err();
    assert!(matches!(err, SecretsError::Swapped { .. }), "{err}");
    assert!(err.to_string().contains("swapped"));
    // and listing says so too, rather than showing a wrong name.
    assert!(store.list().is_err());
    // A broken grant can still be revoked.
    assert!(store.revoke("three").unwrap().is_none());
    assert!(store.list().unwrap().iter().all(|g| g.name != "three"));
}

#[test]
fn wrong_key_is_told_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    let key = tmp.path().join("secrets/key");
    fs::remove_file(&key).unwrap();
    let fresh = file_store(tmp.path());
    let err = fresh.get("github").unwrap_err();
    match &err {
        SecretsError::KeyMismatch {
            stored_key_id,
            current_key_id,
            ..
        } => {
            assert_ne!(stored_key_id, current_key_id)
        }
        other => panic!("{other}"),
    }
    assert!(err.hint().unwrap().contains("re-create"));
    // Re-creating the grant, as the hint says, works with the new key.
    fresh.put("github", GrantSpec::Github, &v(GH)).unwrap();
    assert_eq!(fresh.get("github").unwrap().value.expose(), GH);
}

#[test]
fn bad_key_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    let key = tmp.path().join("secrets/key");

    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = file_store(tmp.path()).get("github").unwrap_err();
    assert!(
        matches!(err, SecretsError::InsecurePermissions { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("chmod 600"));

    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&key, b"short").unwrap();
    let err = file_store(tmp.path()).get("github").unwrap_err();
    assert!(matches!(err, SecretsError::Corrupt { .. }), "{err}");
}

#[test]
fn corrupt_and_invalid_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    for bad in [
        "",
        "../x",
        "a/b",
        "UPPER",
        ".hidden",
        "-dash",
        &"x".repeat(65),
    ] {
        let err = store.put(bad, GrantSpec::Github, &v(GH)).unwrap_err();
        assert!(matches!(err, SecretsError::InvalidName { .. }), "{bad:?}");
        assert!(store.get(bad).is_err());
    }
    fs::write(tmp.path().join("secrets/junk.grant"), b"{not json").unwrap();
    assert!(matches!(
        store.info("junk"),
        Err(SecretsError::Corrupt { .. })
    ));
}

/// An in-memory keyring stand-in.
#[derive(Default)]
struct MemVault {
    key: Mutex<Option<Vec<u8>>>,
    down: Mutex<bool>,
}

impl KeyVault for MemVault {
    fn describe(&self) -> String {
        "test vault".into()
    }
    fn load(&self) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        if *self.down.lock().unwrap() {
            return Err("the vault is down".into());
        }
        Ok(self.key.lock().unwrap().clone().map(Zeroizing::new))
    }
    fn store(&self, key: &[u8]) -> Result<(), String> {
        if *self.down.lock().unwrap() {
            return Err("the vault is down".into());
        }
        *self.key.lock().unwrap() = Some(key.to_vec());
        Ok(())
    }
}

#[test]
fn key_in_vault_when_available() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = Arc::new(MemVault::default());
    let dir = tmp.path().join("secrets");
    let store = SecretStore::open_with(&dir, KeyBackend::Vault(vault.clone())).unwrap();
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    assert_eq!(
        store.key_origin().unwrap(),
        KeyOrigin::Keyring("test vault".into())
    );
    assert!(
        !dir.join("key").exists(),
        "no key file when the vault holds the key"
    );
    assert!(dir.join("key.keyring").exists());
    assert_eq!(mode(&dir.join("key.keyring")), 0o600);

    // Reopened: the same key from the vault.
    let again = SecretStore::open_with(&dir, KeyBackend::Vault(vault.clone())).unwrap();
    assert_eq!(again.get("github").unwrap().value.expose(), GH);

    // The vault goes down later: a clear error, never a new key.
    *vault.down.lock().unwrap() = true;
    let down = SecretStore::open_with(&dir, KeyBackend::Vault(vault.clone())).unwrap();
    let err = down.get("github").unwrap_err();
    assert!(
        matches!(err, SecretsError::KeyringUnavailable { .. }),
        "{err}"
    );
    assert!(!dir.join("key").exists());
    // The same with no keyring at all (headless login).
    let err = SecretStore::open_with(&dir, KeyBackend::FileOnly)
        .unwrap()
        .get("github")
        .unwrap_err();
    assert!(
        matches!(err, SecretsError::KeyringUnavailable { .. }),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("keyring"));
}

#[test]
fn falls_back_to_key_file_when_vault_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = Arc::new(MemVault::default());
    *vault.down.lock().unwrap() = true;
    let dir = tmp.path().join("secrets");
    let store = SecretStore::open_with(&dir, KeyBackend::Vault(vault.clone())).unwrap();
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    assert_eq!(
        store.key_origin().unwrap(),
        KeyOrigin::File(dir.join("key"))
    );
    assert_eq!(mode(&dir.join("key")), 0o600);
    // Once the file exists it wins, even when the vault comes back.
    *vault.down.lock().unwrap() = false;
    let again = SecretStore::open_with(&dir, KeyBackend::Vault(vault.clone())).unwrap();
    assert_eq!(again.get("github").unwrap().value.expose(), GH);
    assert!(vault.key.lock().unwrap().is_none());
}

#[test]
fn auto_backend_is_quick_on_a_headless_machine() {
    // No session bus here: Auto must fall back to the key file at once, not hang.
    if paddock_secrets::key::session_bus_present() {
        eprintln!("a session bus is present; skipping the headless fallback check");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let store = SecretStore::open(tmp.path().join("secrets")).unwrap();
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    assert!(matches!(store.key_origin().unwrap(), KeyOrigin::File(_)));
}

#[test]
fn debug_output_masks_values() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    let g = store.get("github").unwrap();
    let text = format!("{g:?} {g:#?} {store:?} {:?}", store.key_origin().unwrap());
    assert!(!text.contains(GH), "{text}");
    assert!(!text.contains(&GH[4..20]), "{text}");
}

#[test]
fn specs_and_values_are_validated_on_put() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    let err = store
        .put("short", GrantSpec::Github, &v("abc1234"))
        .unwrap_err();
    assert!(matches!(err, SecretsError::InvalidValue { .. }), "{err}");
    // A hand-built spec is re-checked.
    let mut spec = HttpSpec::new(&["api.example.com"], "x-api-key", None).unwrap();
    spec.env = vec!["BAD NAME".into()];
    let err = store
        .put(
            "x",
            GrantSpec::Http(spec.clone()),
            &v("generic-secret-1234567890"),
        )
        .unwrap_err();
    assert!(matches!(err, SecretsError::InvalidEnvName { .. }), "{err}");
    spec.env.clear();
    spec.header = "X-Upper".into();
    assert!(
        store
            .put(
                "x",
                GrantSpec::Http(spec.clone()),
                &v("generic-secret-1234567890")
            )
            .is_err()
    );
    spec.header = "x-api-key".into();
    spec.format = paddock_secrets::ValueFormat::Template {
        template: "no braces".into(),
    };
    assert!(
        store
            .put("x", GrantSpec::Http(spec), &v("generic-secret-1234567890"))
            .is_err()
    );
}

#[test]
fn listing_needs_no_key_and_ignores_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = file_store(tmp.path());
    store.put("github", GrantSpec::Github, &v(GH)).unwrap();
    let dir = tmp.path().join("secrets");
    fs::remove_file(dir.join("key")).unwrap();
    // A temp file left by a crash mid-write.
    fs::write(dir.join(".github.grant.tmp-abcdef"), b"partial").unwrap();
    let lister = file_store(tmp.path());
    let list = lister.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].preview, "ghp_…T0k1");
    assert_eq!(lister.info("github").unwrap().kind(), GrantKind::Github);
    assert!(
        !dir.join("key").exists(),
        "listing must not create or load a key"
    );
}

#[test]
fn concurrent_writers_leave_a_whole_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(file_store(tmp.path()));
    let values: Vec<String> = (0..8)
        .map(|i| format!("ghp_Concurrent{i}Concurrent{i}Concurrent{i}xx"))
        .collect();
    std::thread::scope(|s| {
        for val in &values {
            let store = store.clone();
            s.spawn(move || {
                for _ in 0..10 {
                    store.put("github", GrantSpec::Github, &v(val)).unwrap();
                }
            });
        }
    });
    let got = store.get("github").unwrap();
    assert!(values.iter().any(|x| x == got.value.expose()));
    let leftovers: Vec<_> = fs::read_dir(tmp.path().join("secrets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
