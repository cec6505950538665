//! Start-up cost of a sandbox, end to end through the runtime (create, start, wait for
//! `true`, destroy). Prints the medians per phase; asserts only a generous bound (debug
//! builds and a shared machine are slow), the real target is checked by `bench/`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use paddock_sandbox::Runtime;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn startup_latency() {
    let rt = runtime();
    let (mut create, mut start, mut wait, mut destroy, mut total) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..30 {
        let env = Env::new();
        let spec = env.spec(&["true"]);
        let t0 = Instant::now();
        let h = rt.create(&spec).await.unwrap();
        let t1 = Instant::now();
        let h = rt.start(&h, &spec, Events::default().sink()).await.unwrap();
        let t2 = Instant::now();
        let exit = rt.wait(&h).await.unwrap();
        let t3 = Instant::now();
        rt.destroy(&h).await.unwrap();
        let t4 = Instant::now();
        assert_eq!(exit.exit_code, Some(0));
        create.push(t1 - t0);
        start.push(t2 - t1);
        wait.push(t3 - t2);
        destroy.push(t4 - t3);
        total.push(t3 - t0);
    }
    let m = median(&mut total);
    // One more run with timestamps of each init step as the runtime receives it.
    let env = Env::new();
    let spec = env.spec(&["true"]);
    let stamps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = stamps.clone();
    let t0 = Instant::now();
    let sink: paddock_sandbox::EventSink =
        std::sync::Arc::new(move |e| s2.lock().unwrap().push((t0.elapsed(), format!("{e:?}"))));
    let h = rt.create(&spec).await.unwrap();
    let h = rt.start(&h, &spec, sink).await.unwrap();
    rt.wait(&h).await.unwrap();
    rt.destroy(&h).await.unwrap();
    for (t, e) in stamps.lock().unwrap().iter() {
        eprintln!("{t:>12?} {}", &e[..e.len().min(100)]);
    }
    eprintln!(
        "sandbox `true`: median create {:?} start {:?} wait {:?} (create..exit {:?}), destroy {:?}",
        median(&mut create),
        median(&mut start),
        median(&mut wait),
        m,
        median(&mut destroy)
    );
    assert!(m < Duration::from_millis(500), "median {m:?}");
}
