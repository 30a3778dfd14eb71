//! Headless Chromium (Debian's `chromium`) as a test client for berth's
//! dashboard: the DOM after the page's scripts ran, and a screenshot. Each
//! run has a profile of its own and no network but what the page asks for.

use std::path::Path;
use std::process::Command;

/// Chromium's flags for a quiet, self-contained headless run; the page
/// gets `budget_ms` of virtual time for its scripts and fetches.
fn chromium(profile: &Path, budget_ms: u32) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--virtual-time-budget={budget_ms}"));
    cmd
}

/// The DOM of `url` once its scripts ran for a few (virtual) seconds.
pub fn dump_dom(url: &str) -> String {
    dump_dom_at(url, 1280)
}

/// The DOM of `url`, laid out in a window `width` pixels wide, once its
/// scripts ran for a few (virtual) seconds.
pub fn dump_dom_at(url: &str, width: u32) -> String {
    let profile = tempfile::tempdir().expect("temp dir");
    let out = chromium(profile.path(), 5000)
        .arg(format!("--window-size={width},1000"))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium --dump-dom {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PNG of `url` at 1280×1000 to `dest`.
pub fn screenshot(url: &str, dest: &Path) {
    let profile = tempfile::tempdir().expect("temp dir");
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).expect("create screenshot dir");
    }
    let out = chromium(profile.path(), 5000)
        .arg(format!("--screenshot={}", dest.display()))
        .arg("--window-size=1280,1000")
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success() && dest.exists(),
        "chromium --screenshot {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text of the element with `id` in `dom` (its first text node).
pub fn text_of(dom: &str, id: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let open_end = start + dom[start..].find('>')? + 1;
    let close = open_end + dom[open_end..].find('<')?;
    Some(dom[open_end..close].trim().to_owned())
}

/// The value of `attribute` on the element with `id` in `dom`.
pub fn attribute_of(dom: &str, id: &str, attribute: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..start].rfind('<')?;
    let tag_end = start + dom[start..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let at = tag.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    let end = at + tag[at..].find('"')?;
    Some(tag[at..end].to_owned())
}
