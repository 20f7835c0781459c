//! The README's "Your first real channel", run as written against a
//! Telegram mock: its channel table, its script line, and every command of
//! its code block, in order, with the shipped scripts.

use super::*;
use crate::dispatch::wait_status;
use crate::support::mocks::creds;
use std::process::Command;
use std::time::Duration;

/// The README's section `heading`, up to the next `## `.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[start + heading.len()..];
    &readme[start..start + heading.len() + rest.find("\n## ").unwrap_or(rest.len())]
}

/// The lines of the first fenced block opened by `fence` (e.g. "```sh").
fn block<'a>(text: &'a str, fence: &str) -> Vec<&'a str> {
    let start = text
        .find(fence)
        .unwrap_or_else(|| panic!("no {fence} block"));
    text[start + fence.len()..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim() != "```")
        .map(str::trim)
        .collect()
}

/// The inline code after `before` (up to the closing backtick), and the
/// word after `after` following it.
fn inline<'a>(text: &'a str, before: &str, after: &str) -> (&'a str, &'a str) {
    let start = text.find(before).unwrap_or_else(|| panic!("no {before:?}")) + before.len();
    let end = start + text[start..].find('`').unwrap_or(0);
    let rest = &text[end..];
    let word = rest[rest.find(after).unwrap_or(0) + after.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default();
    (&text[start..end], word)
}

#[test]
fn the_readme_first_real_channel_path_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = section(&readme, "## Your first real channel");
    assert!(
        section.trim_end().lines().count() <= 25,
        "the section is short:\n{section}"
    );

    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Telegram));
    // The README's channel, with the mock's API root, and the mock's
    // credentials where the README takes them from serve's environment.
    let channel = block(section, "```toml")
        .join("\n")
        .replace(
            "token_env = \"TG_BOT_TOKEN\"",
            &format!("token = \"{}\"", creds::TG_TOKEN),
        )
        .replace(
            "secret_token_env = \"TG_WEBHOOK_SECRET\"",
            &format!(
                "secret_token = \"{}\"\nbase_url = \"{}\"",
                creds::TG_SECRET_TOKEN,
                mock.base_url()
            ),
        );
    assert!(
        channel.contains(creds::TG_TOKEN) && channel.contains(creds::TG_SECRET_TOKEN),
        "the README's channel table changed:\n{channel}"
    );
    let mut d = crate::examples::with_shipped_scripts(&base_config(&channel));
    let (script, file) = inline(section, "Save `", " as ");
    let file = file
        .strip_prefix("scripts/")
        .expect("a file under scripts/");
    d.write_script(file, script);
    d.spawn();
    wait_for("the scripts with tg_all", Duration::from_secs(30), || {
        let s = d.status();
        s["scripts"]["audiences"]
            .to_string()
            .contains("tg_all")
            .then_some(())
    });
    let csv_header = block(section, "```sh")
        .iter()
        .find_map(|l| l.split("# header: ").nth(1))
        .expect("the members.csv header")
        .trim()
        .to_string();
    std::fs::write(
        d.path("members.csv"),
        format!("{csv_header}\ntg,123456789,Ann,en,vip\n"),
    )
    .expect("write members.csv");

    let commands: Vec<Vec<&str>> = block(section, "```sh")
        .iter()
        .map(|l| {
            l.split(" # ")
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .filter(|words| words.first() == Some(&"pushd"))
        .collect();
    assert_eq!(commands.len(), 6, "{commands:?}");
    for words in &commands {
        let out = Command::new(BIN)
            .current_dir(d.dir.path())
            .arg("--config")
            .arg(&d.config_path)
            .args(&words[1..])
            .output()
            .expect("run pushd");
        assert!(
            out.status.success(),
            "{}: {}{}",
            words.join(" "),
            stdout(&out),
            stderr(&out)
        );
    }
    let set = mock.calls_to("/setWebhook");
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].body()["url"], "https://bot.example.com/webhooks/tg");
    wait_status(&d, "first-real", "completed", Duration::from_secs(30));
    // The test message, then the push.
    let sent = mock.requests_for("123456789");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[1].body()["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Hi Ann, welcome to the VIP club!"),
        "{sent:?}"
    );
}
