//! `paddock-ca-bench [N]`: leaf minting time and cache-hit time (release build).

use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let dir = std::env::temp_dir().join(format!("paddock-ca-bench-{}", std::process::id()));
    let ca = match paddock_ca::CertAuthority::open_with_cache(&dir, n + 1) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\nhint: {}", e.hint());
            std::process::exit(1);
        }
    };
    let mut mint = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        ca.leaf(&format!("host{i}.example.com")).expect("mint");
        mint.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut hit = Vec::with_capacity(n * 10);
    for r in 0..10 {
        for i in 0..n {
            let t = Instant::now();
            ca.leaf(&format!("host{}.example.com", (i + r) % n))
                .expect("hit");
            hit.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let p = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * q) as usize]
    };
    println!(
        "leaf mint: p50 {:.1} µs  p99 {:.1} µs  (n={n})",
        p(&mut mint, 0.5),
        p(&mut mint, 0.99)
    );
    println!(
        "cache hit: p50 {:.2} µs  p99 {:.2} µs  (n={})",
        p(&mut hit, 0.5),
        p(&mut hit, 0.99),
        hit.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
