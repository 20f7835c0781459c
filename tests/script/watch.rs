//! The watcher sees in-place writes, atomic renames, new and deleted files,
//! and config edits, and ignores editor side files.
//!
//! Steps are separated by a barrier: touching the config file and waiting for
//! its `Config` event, so a late event of one step cannot satisfy the next.

use pushd::script::watch::{self, Changed};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

const DEADLINE: Duration = Duration::from_secs(10);

async fn next(rx: &mut Receiver<Changed>, waiting_for: &str) -> Changed {
    match tokio::time::timeout(DEADLINE, rx.recv()).await {
        Ok(Some(c)) => c,
        Ok(None) => panic!("watcher stopped while waiting for {waiting_for}"),
        Err(_) => panic!("no change reported within {DEADLINE:?} for {waiting_for}"),
    }
}

/// Touches the config file and waits for its event; returns what came before it.
async fn barrier(rx: &mut Receiver<Changed>, config: &Path, n: &mut u32) -> Vec<Changed> {
    *n += 1;
    std::fs::write(config, format!("# edit {n}\n")).unwrap();
    let mut before = Vec::new();
    loop {
        match next(rx, "the config barrier").await {
            Changed::Config => return before,
            other => before.push(other),
        }
    }
}

async fn expect_scripts(rx: &mut Receiver<Changed>, step: &str) {
    assert_eq!(next(rx, step).await, Changed::Scripts, "{step}");
}

#[tokio::test]
async fn watcher_reports_edits_renames_new_and_deleted_files_and_ignores_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    std::fs::write(scripts.join("10_a.lua"), "-- v1").unwrap();
    let mut rx = watch::spawn(
        vec![scripts.clone(), config.clone()],
        Duration::from_millis(50),
    );
    let mut n = 0;

    // Editor noise only: the first event after it must be the config barrier.
    for noise in [
        ".10_a.lua.swp",
        "10_a.lua~",
        ".#10_a.lua",
        "4913",
        "notes.txt",
        "pushd.d.lua",
    ] {
        std::fs::write(scripts.join(noise), "x").unwrap();
    }
    std::fs::remove_file(scripts.join("4913")).unwrap();
    let before = barrier(&mut rx, &config, &mut n).await;
    assert!(before.is_empty(), "editor side files triggered {before:?}");

    // In-place write.
    std::fs::write(scripts.join("10_a.lua"), "-- v2").unwrap();
    expect_scripts(&mut rx, "in-place write").await;
    barrier(&mut rx, &config, &mut n).await;

    // Atomic save: write a temp file, rename it over the script.
    std::fs::write(scripts.join("10_a.lua.tmp"), "-- v3").unwrap();
    std::fs::rename(scripts.join("10_a.lua.tmp"), scripts.join("10_a.lua")).unwrap();
    expect_scripts(&mut rx, "atomic rename").await;
    barrier(&mut rx, &config, &mut n).await;

    // A new file.
    std::fs::write(scripts.join("20_b.lua"), "-- new").unwrap();
    expect_scripts(&mut rx, "new file").await;
    barrier(&mut rx, &config, &mut n).await;

    // A deleted file.
    std::fs::remove_file(scripts.join("20_b.lua")).unwrap();
    expect_scripts(&mut rx, "deleted file").await;
    barrier(&mut rx, &config, &mut n).await;

    // Atomic save of the config file itself.
    let tmp_cfg = tmp.path().join(".config.toml.swp");
    std::fs::write(&tmp_cfg, "# atomic").unwrap();
    std::fs::rename(&tmp_cfg, &config).unwrap();
    assert_eq!(next(&mut rx, "config atomic save").await, Changed::Config);
}

#[tokio::test]
async fn a_burst_of_saves_is_one_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    // A long quiet period: the whole burst lands inside it.
    let mut rx = watch::spawn(
        vec![scripts.clone(), config.clone()],
        Duration::from_millis(300),
    );
    for i in 0..20 {
        std::fs::write(scripts.join(format!("{i:02}.lua")), "-- x").unwrap();
    }
    expect_scripts(&mut rx, "burst").await;
    let mut n = 0;
    let before = barrier(&mut rx, &config, &mut n).await;
    assert!(
        before.is_empty(),
        "a burst gave more than one reload: {before:?}"
    );
}
