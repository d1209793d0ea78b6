//! Reading a release file as a producer's CLI does: strict parsing, and the user data of
//! `<release>.userdata` (as Odin's client reads it).

use skald_engine::codec;
use skald_engine::workflow::names::USER_DATA_FILE_PLACEHOLDER;
use skald_engine::workflow::validate::Problem;
use skald_engine::workflow::Release;
use std::path::{Path, PathBuf};

/// Reads and parses `path`. When `<path>.userdata` exists, its contents are the user data; a
/// release that also gives `user_data` inline is refused (unless it is `{{USER_DATA_FILE}}`,
/// which asks for the file and so needs it).
pub fn read(path: &Path) -> Result<Release, Problem> {
    let text = std::fs::read_to_string(path).map_err(|e| Problem::new("release", format!("cannot read {}: {e}", path.display())))?;
    let mut release = codec::parse_release(&text)?;
    let userdata_path = userdata_path(path);
    let from_file = read_userdata(&userdata_path)?;
    release.user_data = match (release.user_data.take(), from_file) {
        (Some(placeholder), None) if placeholder == USER_DATA_FILE_PLACEHOLDER => {
            let message = format!("{USER_DATA_FILE_PLACEHOLDER} needs {}, which does not exist", userdata_path.display());
            return Err(Problem::new("user_data", message));
        }
        (Some(inline), Some(_)) if inline != USER_DATA_FILE_PLACEHOLDER => {
            let message = format!("is given inline and {} exists: keep one of them", userdata_path.display());
            return Err(Problem::new("user_data", message));
        }
        (_, Some(file)) => Some(file),
        (inline, None) => inline,
    };
    Ok(release)
}

/// `<path>.userdata`: Odin's name for a release's user data.
fn userdata_path(path: &Path) -> PathBuf {
    let mut userdata_path = path.as_os_str().to_owned();
    userdata_path.push(".userdata");
    PathBuf::from(userdata_path)
}

/// The file's contents, or none when there is no such file.
fn read_userdata(path: &Path) -> Result<Option<String>, Problem> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Problem::new("user_data", format!("cannot read {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
    }

    /// A scratch directory of this test's own.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skald-release-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Odin's way: the release says nothing of user data, and `<release>.userdata` is it.
    #[test]
    fn the_userdata_file_is_the_user_data_of_a_release_that_gives_none() {
        let path = examples().join("odin/deploy-test-release.json");
        let release = read(&path).unwrap();
        let file = std::fs::read_to_string(examples().join("odin/deploy-test-release.json.userdata")).unwrap();
        assert_eq!(release.user_data.as_deref(), Some(file.as_str()));
    }

    #[test]
    fn the_placeholder_still_reads_the_userdata_file() {
        let release = read(&examples().join("release.json")).unwrap();
        assert!(release.user_data.unwrap().starts_with("#cloud-config"));
    }

    #[test]
    fn inline_user_data_without_a_userdata_file_is_kept() {
        let dir = scratch("inline");
        let text = std::fs::read_to_string(examples().join("odin/null-release.json")).unwrap();
        let file = dir.join("release.json");
        std::fs::write(&file, text.replacen("\"ami\"", "\"user_data\": \"#!/bin/sh\",\n  \"ami\"", 1)).unwrap();
        assert_eq!(read(&file).unwrap().user_data.as_deref(), Some("#!/bin/sh"));
    }

    #[test]
    fn inline_user_data_beside_a_userdata_file_is_refused_naming_both() {
        let dir = scratch("conflict");
        let text = std::fs::read_to_string(examples().join("odin/null-release.json")).unwrap();
        let file = dir.join("release.json");
        std::fs::write(&file, text.replacen("\"ami\"", "\"user_data\": \"#!/bin/sh\",\n  \"ami\"", 1)).unwrap();
        std::fs::write(dir.join("release.json.userdata"), "#cloud-config\n").unwrap();

        let problem = read(&file).unwrap_err();

        assert_eq!(problem.path, "user_data");
        assert!(problem.message.starts_with("is given inline and "), "{problem}");
        assert!(problem.message.contains("release.json.userdata exists"), "{problem}");
    }

    #[test]
    fn a_release_with_neither_has_no_user_data() {
        let dir = scratch("neither");
        let file = dir.join("release.json");
        std::fs::copy(examples().join("odin/null-release.json"), &file).unwrap();
        assert_eq!(read(&file).unwrap().user_data, None);
    }
}
