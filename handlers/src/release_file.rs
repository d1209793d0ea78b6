//! Reading a release file as a producer's CLI does: strict parsing, `{{USER_DATA_FILE}}`.

use skald_engine::codec;
use skald_engine::workflow::names::USER_DATA_FILE_PLACEHOLDER;
use skald_engine::workflow::validate::Problem;
use skald_engine::workflow::Release;
use std::path::Path;

/// Reads and parses `path`. When `user_data` is exactly `{{USER_DATA_FILE}}`, it becomes the
/// contents of `<path>.userdata`.
pub fn read(path: &Path) -> Result<Release, Problem> {
    let text = std::fs::read_to_string(path).map_err(|e| Problem::new("release", format!("cannot read {}: {e}", path.display())))?;
    let mut release = codec::parse_release(&text)?;
    if release.user_data.as_deref() == Some(USER_DATA_FILE_PLACEHOLDER) {
        let mut userdata_path = path.as_os_str().to_owned();
        userdata_path.push(".userdata");
        let userdata_path = Path::new(&userdata_path);
        let user_data = std::fs::read_to_string(userdata_path)
            .map_err(|e| Problem::new("user_data", format!("{USER_DATA_FILE_PLACEHOLDER} needs {}: {e}", userdata_path.display())))?;
        release.user_data = Some(user_data);
    }
    Ok(release)
}
