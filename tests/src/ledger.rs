//! The answer ledger: every answer the suites receive over HTTP, one JSON line each, in
//! `$TEST_ANSWER_LEDGER/<test binary>.jsonl` (scripts/stack.sh sets it to `.local/test/answers`).
//! `make test` then checks each against docs/openapi.yaml (scripts/check_answers.py); anything
//! else that wants the answers (metrics, a report) can read the same lines:
//! `{"source", "method", "path", "status", "content_type", "body"}`. Nothing is recorded when the
//! variable is unset.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

/// The test binary's name without cargo's hash suffix (`matrix-0123abcd` → `matrix`).
fn source() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|path| path.file_stem())
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_owned(),
        _ => stem,
    }
}

static LEDGER: LazyLock<Option<(String, Mutex<File>)>> = LazyLock::new(|| {
    let dir = PathBuf::from(std::env::var_os("TEST_ANSWER_LEDGER")?);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let source = source();
    let path = dir.join(format!("{source}.jsonl"));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some((source, Mutex::new(file)))
});

/// One answer as a ledger line.
pub fn line(source: &str, method: &str, path: &str, status: u16, content_type: &str, body: &str) -> String {
    serde_json::json!({
        "source": source,
        "method": method,
        "path": path,
        "status": status,
        "content_type": content_type,
        "body": body,
    })
    .to_string()
}

/// Appends one answer to the ledger (one write per line, under a lock, so that concurrent
/// requests of one test binary never interleave their lines).
pub fn record(method: &str, path: &str, status: u16, content_type: &str, body: &str) {
    let Some((source, file)) = LEDGER.as_ref() else { return };
    let mut text = line(source, method, path, status, content_type, body);
    text.push('\n');
    let mut file = file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    file.write_all(text.as_bytes()).expect("the answer ledger is writable");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_line_is_one_json_object_with_every_field() {
        let text = line(
            "e2e",
            "POST",
            "/crm/webhook",
            401,
            "application/json",
            "{\"error\":\n1}",
        );
        assert!(!text.contains('\n'), "one line: {text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["source"], "e2e");
        assert_eq!(value["method"], "POST");
        assert_eq!(value["path"], "/crm/webhook");
        assert_eq!(value["status"], 401);
        assert_eq!(value["content_type"], "application/json");
        assert_eq!(value["body"], "{\"error\":\n1}");
    }
}
