//! Placeholders: random, format-valid fakes that SDKs accept (right prefix, length and
//! charset), handed to the sandbox instead of real values. A new one per run, from the
//! caller's cryptographic RNG, so placeholders say nothing about the real value beyond
//! its issuer prefix and length, and differ between runs.

use rand::{CryptoRng, Rng};

use crate::kind::PlaceholderStyle;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn pick<R: CryptoRng + ?Sized>(rng: &mut R, alphabet: &[u8], n: usize, out: &mut String) {
    for _ in 0..n {
        out.push(alphabet[rng.random_range(0..alphabet.len())] as char);
    }
}

fn base62_u32(mut n: u32, width: usize) -> String {
    let mut digits = Vec::new();
    while n > 0 {
        digits.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// A placeholder in `style` for the real value `real` (whose prefix and length shape some
/// styles).
pub fn generate<R: CryptoRng + ?Sized>(style: PlaceholderStyle, real: &str, rng: &mut R) -> String {
    let mut out = String::new();
    match style {
        PlaceholderStyle::Github => {
            if real.starts_with("github_pat_") {
                out.push_str("github_pat_");
                pick(rng, BASE62, 22, &mut out);
                out.push('_');
                pick(rng, BASE62, 59, &mut out);
            } else {
                let prefix = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]
                    .into_iter()
                    .find(|p| real.starts_with(p))
                    .unwrap_or("ghp_");
                let mut body = String::new();
                pick(rng, BASE62, 30, &mut body);
                let crc = crc32fast::hash(body.as_bytes());
                out.push_str(prefix);
                out.push_str(&body);
                out.push_str(&base62_u32(crc, 6));
            }
        }
        PlaceholderStyle::Anthropic => {
            out.push_str("sk-ant-api03-");
            pick(rng, URLSAFE, 93, &mut out);
            out.push_str("AA");
        }
        PlaceholderStyle::Openai => {
            out.push_str("sk-proj-");
            pick(rng, URLSAFE, 74, &mut out);
            out.push_str("T3BlbkFJ");
            pick(rng, URLSAFE, 74, &mut out);
        }
        PlaceholderStyle::Generic => generic(real, rng, &mut out),
        PlaceholderStyle::Google => {
            out.push_str("AIza");
            pick(rng, URLSAFE, 35, &mut out);
        }
        PlaceholderStyle::ClaudeOauth => {
            out.push_str("sk-ant-oat01-");
            pick(rng, URLSAFE, 93, &mut out);
            out.push_str("AA");
        }
        PlaceholderStyle::GoogleOauth => {
            out.push_str("ya29.");
            pick(rng, URLSAFE, 150, &mut out);
        }
        PlaceholderStyle::Jwt => out.push_str(&crate::login::fake_jwt(real, rng)),
    }
    out
}

fn generic<R: CryptoRng + ?Sized>(real: &str, rng: &mut R, out: &mut String) {
    if real.is_empty() {
        pick(rng, BASE62, 40, out);
        return;
    }
    let prefix = issuer_prefix(real);
    out.push_str(prefix);
    for b in real[prefix.len()..].bytes() {
        let c = match b {
            b'0'..=b'9' => b'0' + rng.random_range(0..10u8),
            b'a'..=b'z' => b'a' + rng.random_range(0..26u8),
            b'A'..=b'Z' => b'A' + rng.random_range(0..26u8),
            b'-' | b'_' | b'.' => b,
            _ => BASE62[rng.random_range(0..BASE62.len())],
        };
        out.push(c as char);
    }
}

/// A short, non-secret issuer prefix: a known one (`sk-`, `xoxb-` …) or up to 8 leading
/// lower-case letters ending in `-` or `_` (`glpat-`, `npm_`).
fn issuer_prefix(real: &str) -> &str {
    let v = crate::value::mask(real);
    if let Some((p, _)) = v.split_once('…')
        && !p.is_empty()
    {
        return &real[..p.len()];
    }
    let letters = real.bytes().take_while(u8::is_ascii_lowercase).count();
    if (2..=8).contains(&letters)
        && matches!(real.as_bytes().get(letters), Some(b'-' | b'_'))
        && real.len() >= letters + 1 + 16
    {
        return &real[..=letters];
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn base62_checksum_width() {
        assert_eq!(base62_u32(0, 6), "000000");
        assert_eq!(base62_u32(61, 6), "00000z");
        assert_eq!(base62_u32(u32::MAX, 6), "4gfFC3");
    }

    #[test]
    fn generic_keeps_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        let real = "glpat-AbC123xyz_789-QWERTY12";
        let p = generate(PlaceholderStyle::Generic, real, &mut rng);
        assert_eq!(p.len(), real.len());
        assert!(p.starts_with("glpat-"));
        assert_ne!(p, real);
        for (a, b) in p.bytes().zip(real.bytes()) {
            assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
            assert_eq!(a.is_ascii_lowercase(), b.is_ascii_lowercase());
        }
        let p = generate(PlaceholderStyle::Generic, "", &mut rng);
        assert_eq!(p.len(), 40);
    }
}
