//! Misbehaving plugins fail only their own request, over HTTPS, with the right code.

use std::time::{Duration, Instant};

use cgs_e2e::{Sandbox, code};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_plugins_fail_alone() {
    // Fuel for ~20 ms of compute, a 16 MiB memory cap and a 2 s deadline.
    let sb = Sandbox::start(&["--plugin-fuel", "200000000", "--plugin-memory-mib", "16"]).await.unwrap();
    let c = sb.client.clone();

    let bad = ["/app/chaos/loop", "/app/chaos/alloc", "/app/chaos/panic"].map(|path| {
        let c = c.clone();
        tokio::spawn(async move { (path, c.get(path).await.unwrap()) })
    });
    // Well-behaved requests keep succeeding while the bad ones run.
    let start = Instant::now();
    for _ in 0..20 {
        let r = c.get("/app/chaos/ok").await.unwrap();
        assert_eq!(r.status, 200, "{}", code(&r));
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    for h in bad {
        let (path, r) = h.await.unwrap();
        let expected = match path {
            "/app/chaos/loop" => "PluginOutOfFuel",
            "/app/chaos/alloc" => "PluginMemoryLimitExceeded",
            _ => "PluginPanicked",
        };
        assert_eq!((r.status, code(&r).as_str()), (500, expected), "{path}");
    }

    // Writes made by failed requests are not visible.
    for mode in ["panic", "loop", "alloc", "error"] {
        let key = format!("e2e-{mode}");
        let r =
            c.post_json(&format!("/app/chaos/write-then/{mode}"), &json!({"key": key, "value": "v"})).await.unwrap();
        assert!(r.status >= 400, "{mode}: {}", r.status);
        let r = c.get(&format!("/app/chaos/kv/{key}")).await.unwrap();
        assert_eq!(
            (r.status, code(&r).as_str()),
            (404, "KeyNotFound"),
            "the write of a failed `{mode}` request leaked"
        );
    }
    // And the node still serves.
    assert_eq!(c.get("/node/health").await.unwrap().status, 200);
}
