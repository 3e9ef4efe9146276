#!/usr/bin/env python3
"""Tests of scripts/check_docs.py on small repositories made here: a clean one passes, and each
kind of problem the check exists for is reported (so that the check can fail)."""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_docs  # noqa: E402

CONFIG_RS = """
pub fn read(env: &Env) {
    env.required("CRM_TABLE_NAME");
    env.get("SOURCE_UTC_OFFSET");
    env.secrets("CRM_WEBHOOK_SECRET");
}

#[cfg(test)]
mod tests {
    fn f(env: &Env) { env.get("ONLY_IN_TESTS"); }
}
"""

ERROR_RS = """
impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::A => "invalid_json",
            Self::B => "no_secret",
        }
    }
}
"""

FILES = {
    "shared/src/config.rs": CONFIG_RS,
    "shared/src/error.rs": ERROR_RS,
    "docs/configuration.md": (
        "# Configuration\n\n`CRM_TABLE_NAME`, `SOURCE_UTC_OFFSET`, `CRM_WEBHOOK_SECRET`, "
        "`CRM_WEBHOOK_SECRET_<mid>`\n"
    ),
    "docs/endpoints.md": "# Endpoints\n\n`invalid_json`, `no_secret`; see [contract](contract.md#2-endpoints).\n",
    "docs/openapi.yaml": "codes: [invalid_json, no_secret]\n",
    "docs/contract.md": "# Contract\n\n## 2. Endpoints\n\n```sh\n[not a link](nowhere.md)\n```\n",
    "README.md": "[docs](docs/endpoints.md) and [the web](https://example.com/x.md)\n",
}


def problems(root: Path) -> list[str]:
    files = check_docs.repository_files(root)
    return (
        check_docs.link_problems(root, files)
        + check_docs.variable_problems(root)
        + check_docs.error_code_problems(root)
        + check_docs.outside_path_problems(root, files)
    )


class CheckDocs(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        for name, text in FILES.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.root / name
        text = path.read_text(encoding="utf-8")
        self.assertIn(old, text)
        path.write_text(text.replace(old, new), encoding="utf-8")

    def test_a_consistent_tree_passes(self) -> None:
        self.assertEqual(problems(self.root), [])

    def test_a_missing_file_or_anchor_is_reported(self) -> None:
        self.edit("README.md", "docs/endpoints.md", "docs/endpoint.md")
        self.edit("docs/endpoints.md", "#2-endpoints", "#3-tables")
        self.assertEqual(
            problems(self.root),
            [
                "README.md: link `docs/endpoint.md`: no such file",
                "docs/endpoints.md: link `contract.md#3-tables`: no heading with anchor `#3-tables`",
            ],
        )

    def test_a_link_out_of_the_repository_is_reported(self) -> None:
        self.edit("README.md", "docs/endpoints.md", "../elsewhere/contract.md")
        self.assertEqual(problems(self.root), ["README.md: link `../elsewhere/contract.md` leaves the repository"])

    def test_an_undocumented_variable_is_reported(self) -> None:
        self.edit("docs/configuration.md", "`SOURCE_UTC_OFFSET`, ", "")
        self.edit("docs/configuration.md", ", `CRM_WEBHOOK_SECRET_<mid>`", "")
        self.assertEqual(
            problems(self.root),
            [
                "docs/configuration.md: `SOURCE_UTC_OFFSET` (read by shared/src/config.rs) is not listed",
                "docs/configuration.md: `CRM_WEBHOOK_SECRET_<mid>` (read by shared/src/config.rs) is not listed",
            ],
        )

    def test_an_undescribed_error_code_is_reported(self) -> None:
        self.edit("docs/openapi.yaml", "no_secret", "no_secrets")
        self.assertEqual(
            problems(self.root),
            ["docs/openapi.yaml: error code `no_secret` (shared/src/error.rs) is not described"],
        )

    def test_a_path_outside_the_repository_is_reported(self) -> None:
        outside = "/" + "work" + "/shared/SPEC.md"
        self.edit("docs/contract.md", "# Contract\n", f"# Contract\n\nSee {outside}.\n")
        self.assertEqual(
            problems(self.root),
            ["docs/contract.md:3: `/" + "work" + "/` names a path outside the repository"],
        )


if __name__ == "__main__":
    unittest.main()
