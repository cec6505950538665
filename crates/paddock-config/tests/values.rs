//! The parsers the CLI reuses for flags: same rules and messages as in config files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use paddock_config::{
    HostPattern, PortMapping, format_duration, parse_cpus, parse_duration, parse_host_pattern,
    parse_memory, parse_mount_spec, parse_port_mapping, validate_dns_label,
};

#[test]
fn memory() {
    let ok = [
        ("1", 1),
        ("1024", 1024),
        ("100B", 100),
        ("1K", 1 << 10),
        ("1k", 1 << 10),
        ("1KB", 1 << 10),
        ("1KiB", 1 << 10),
        ("512M", 512 << 20),
        ("512 MiB", 512 << 20),
        ("1.5G", 3 << 29),
        ("1.5GB", 3 << 29),
        ("0.5K", 512),
        (".5K", 512),
        ("0.1K", 102),
        ("2T", 2 << 40),
        ("2TiB", 2 << 40),
        (" 64M ", 64 << 20),
        ("16777215T", 16_777_215 << 40),
    ];
    for (s, want) in ok {
        assert_eq!(parse_memory(s), Ok(want), "{s}");
    }
    let e = parse_memory("12XB").unwrap_err();
    assert_eq!(e.message(), "unknown memory unit `XB` in `12XB`");
    assert!(e.hint().unwrap().contains("KiB/MiB/GiB"), "{e:?}");
    for bad in [
        "",
        "G",
        "1.G",
        "1..5G",
        "1.2.3M",
        "-1M",
        "0",
        "0M",
        "0.0000001K",
        "16777216T",
        "99999999999999999999999",
        "1e3M",
        "M1",
    ] {
        assert!(parse_memory(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn cpus() {
    assert_eq!(parse_cpus("1.5"), Ok(1.5));
    assert_eq!(parse_cpus("2"), Ok(2.0));
    assert_eq!(parse_cpus(" 0.25 "), Ok(0.25));
    for bad in ["0", "-1", "abc", "", "inf", "NaN", "1e999"] {
        assert!(parse_cpus(bad).is_err(), "{bad:?} should fail");
    }
    assert_eq!(
        parse_cpus("0").unwrap_err().message(),
        "`0` must be greater than 0"
    );
}

#[test]
fn durations() {
    let ok = [
        ("5m", 300),
        ("30s", 30),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1d", 86_400),
    ];
    for (s, secs) in ok {
        assert_eq!(parse_duration(s), Ok(Duration::from_secs(secs)), "{s}");
    }
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    for bad in [
        "",
        "5",
        "5x",
        "m",
        "0s",
        "0m0s",
        "-5s",
        "5 m",
        "1.5h",
        "99999999999999999999999d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
    }
    assert_eq!(
        parse_duration("5").unwrap_err().message(),
        "duration `5` has no unit"
    );
    for d in ["5m", "30s", "2h", "1d", "500ms", "90s", "1h30m"] {
        let parsed = parse_duration(d).unwrap();
        assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed), "{d}");
    }
    assert_eq!(format_duration(Duration::from_secs(300)), "5m");
    assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
}

#[test]
fn dns_labels() {
    for ok in ["a", "my-agent", "a1", "0", &"a".repeat(63)] {
        assert_eq!(validate_dns_label(ok), Ok(()), "{ok}");
    }
    let msg = |s: &str| validate_dns_label(s).unwrap_err().message().to_string();
    assert_eq!(msg(""), "name is empty");
    assert_eq!(msg("-a"), "name `-a` must start with a letter or digit");
    assert_eq!(msg("a-"), "name `a-` must not end with '-'");
    assert_eq!(
        msg("a_b"),
        "name `a_b` contains `_` at position 2; only lowercase letters, digits and '-' are allowed"
    );
    assert_eq!(
        msg(&"a".repeat(64)),
        format!(
            "name `{}` is 64 characters long; the limit is 63",
            "a".repeat(64)
        )
    );
    assert_eq!(
        validate_dns_label("Web").unwrap_err().hint(),
        Some("use lowercase: `web`")
    );
    assert_eq!(validate_dns_label("a.b").unwrap_err().hint(), None);
    assert!(validate_dns_label("é").is_err());
}

#[test]
fn port_mappings() {
    assert_eq!(
        parse_port_mapping("web=3000"),
        Ok(PortMapping {
            endpoint: "web".into(),
            port: 3000
        })
    );
    for bad in [
        "web",
        "web=",
        "=3000",
        "web=0",
        "web=65536",
        "web=http",
        "Web=80",
        "web=-1",
        "web=3000=1",
    ] {
        assert!(parse_port_mapping(bad).is_err(), "{bad:?} should fail");
    }
    assert_eq!(
        parse_port_mapping("web:3000").unwrap_err().hint(),
        Some("write ENDPOINT=PORT, e.g. `web=3000`")
    );
    assert_eq!(
        parse_port_mapping("web=70000").unwrap_err().message(),
        "port 70000 is out of range; ports are 1–65535"
    );
}

#[test]
fn mount_specs() {
    let base = Path::new("/work/proj");
    let m = parse_mount_spec("src:/dst:ro", base).unwrap();
    assert_eq!(m.source, PathBuf::from("/work/proj/src"));
    assert_eq!(m.target, PathBuf::from("/dst"));
    assert!(m.read_only);
    let m = parse_mount_spec("/abs/./x/../y:/d/e/:rw", base).unwrap();
    assert_eq!(m.source, PathBuf::from("/abs/y"));
    assert_eq!(m.target, PathBuf::from("/d/e"));
    assert!(!m.read_only);
    let m = parse_mount_spec("../../../../up:/u", base).unwrap();
    assert_eq!(m.source, PathBuf::from("/up"), "never above /");
    if let Some(home) = std::env::var_os("HOME").filter(|h| Path::new(h).is_absolute()) {
        let m = parse_mount_spec("~/.cache:/c", base).unwrap();
        assert_eq!(m.source, PathBuf::from(home).join(".cache"));
    }
    for bad in [
        "",
        "a",
        "a:",
        ":b",
        "a:b",
        "a:/b:x",
        "a:/b:ro:x",
        "a:/",
        "a:/b/../c",
        "~x/y:/b",
    ] {
        assert!(parse_mount_spec(bad, base).is_err(), "{bad:?} should fail");
    }
    let e = parse_mount_spec("data:data", base).unwrap_err();
    assert_eq!(e.hint(), Some("did you mean `/data`?"));
}

#[test]
fn host_patterns() {
    assert_eq!(
        parse_host_pattern("API.GitHub.com"),
        Ok(HostPattern::Exact("api.github.com".into()))
    );
    assert_eq!(
        parse_host_pattern("*.x.io"),
        Ok(HostPattern::Subdomains("x.io".into()))
    );
    assert_eq!(
        parse_host_pattern("::1"),
        Ok(HostPattern::Exact("::1".into()))
    );
    for bad in [
        "",
        "*",
        "*.",
        "**.a",
        "a.*",
        "*a.com",
        "a..b",
        ".a",
        "a.",
        "a b",
        "http://a",
        "a:80",
        "a/b",
        "*.1.2.3.4",
        "-a.b",
        "a-.b",
        &format!("{}.com", "a".repeat(64)),
    ] {
        assert!(parse_host_pattern(bad).is_err(), "{bad:?} should fail");
    }
    // Serialized as written, read back the same.
    let p = parse_host_pattern("*.x.io").unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(json, "\"*.x.io\"");
    assert_eq!(serde_json::from_str::<HostPattern>(&json).unwrap(), p);
    assert!(serde_json::from_str::<HostPattern>("\"a b\"").is_err());
}
