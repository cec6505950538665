//! Run names and ids: `run_<12 hex>` ids, adjective-animal names, DNS-label validation.

use rand::Rng;

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "gentle", "happy", "jolly", "keen", "lively", "lucky",
    "merry", "nimble", "proud", "quick", "quiet", "rapid", "sharp", "shy", "steady", "swift",
    "tidy", "witty", "zesty", "bold", "bright", "cosy", "fancy", "fuzzy", "grand", "mellow",
];
const ANIMALS: &[&str] = &[
    "otter", "badger", "falcon", "heron", "lynx", "marten", "newt", "owl", "panda", "puffin",
    "quokka", "raven", "seal", "stoat", "tapir", "tern", "vole", "walrus", "wombat", "yak",
    "bison", "crane", "dingo", "egret", "ferret", "gecko", "ibis", "koala", "lemur", "moose",
];

/// A fresh run id: `run_` and 12 lowercase hex digits.
pub fn new_run_id() -> String {
    let n: u64 = rand::rng().random::<u64>() & 0xffff_ffff_ffff;
    format!("run_{n:012x}")
}

/// A random `adjective-animal` name.
pub fn random_name() -> String {
    let mut rng = rand::rng();
    format!(
        "{}-{}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        ANIMALS[rng.random_range(0..ANIMALS.len())]
    )
}

/// Is `s` a valid DNS label (1–63 of `[a-z0-9-]`, not starting or ending with `-`)?
/// Returns what is wrong.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "it is {} characters long; the limit is 63",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "`{}` is not allowed; use lowercase letters, digits and `-`",
            c.escape_default()
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("it starts or ends with `-`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_have_the_documented_shape() {
        for _ in 0..100 {
            let id = new_run_id();
            assert_eq!(id.len(), 16);
            assert!(
                id[4..]
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            check_dns_label(&random_name()).unwrap();
        }
    }

    #[test]
    fn dns_labels() {
        assert!(check_dns_label("web-1").is_ok());
        assert!(check_dns_label("Web").is_err());
        assert!(check_dns_label("-x").is_err());
        assert!(check_dns_label("a_b").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_label("").is_err());
    }
}
