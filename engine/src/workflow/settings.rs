//! What the operator of a deployer decided, as opposed to what a producer's release asks for.
//!
//! A release is written by whoever may send deploys; these settings are the deployer's own (stack
//! parameters, environment variables) and bound what a release may do. The runner records them
//! with every request (`DeployRequested`), so a replay judges a deploy by the settings it ran
//! under, not by today's. Histories recorded before settings existed carry none and are judged
//! as they were then ([`Settings::legacy`] rules).
//!
//! Deliberately absent: anything a release can override upward. A release may narrow a setting
//! (fewer AMI owners), never widen it.

use super::release::{AmiRef, Release, AMI_NAME_PREFIX};
use super::validate::Problem;
use serde::{Deserialize, Serialize};

/// The AMI owner that means "the account being deployed into", as EC2's DescribeImages takes it.
pub const OWNER_SELF: &str = "self";
/// A bound on the deployer's list, far beyond any real organisation's image accounts.
pub const AMI_OWNERS_MAX: usize = 50;

/// skald's own conventions: the opt-in tag's value, the path prefix, the size tags' prefix.
pub const CONVENTION_DEFAULT: &str = "skald";

/// The deployer's settings a request was judged under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Accounts (12-digit ids, or `self`) whose images a `$name-prefix:` AMI may come from. The
    /// owners are the trust: images found by name carry no opt-in tag across accounts.
    pub ami_owners: Vec<String>,
    /// The value of the `DeployWith` tag that opts AMIs and subnets in (`odin` in an account set
    /// up for Odin).
    #[serde(default = "convention_default", skip_serializing_if = "is_convention_default")]
    pub opt_in: String,
    /// The first part of an instance profile's path, `/<prefix>/<project>/<config>/<service>/`,
    /// and of the roles the deployer may pass to EC2 (infra/).
    #[serde(default = "convention_default", skip_serializing_if = "is_convention_default")]
    pub path_prefix: String,
    /// A template ASG's size tags are `<prefix>:min_size` and `<prefix>:max_size` (deployomat's
    /// `organization_prefix`).
    #[serde(default = "convention_default", skip_serializing_if = "is_convention_default")]
    pub size_tag_prefix: String,
    /// The region the deployer runs in: where a release without `aws_region` deploys. Recorded
    /// so a history says where it ran; absent in histories from before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_region: Option<String>,
}

fn convention_default() -> String {
    CONVENTION_DEFAULT.to_string()
}

/// Conventions at skald's own are not written, so settings recorded before a convention existed
/// hash as they did (the state hash covers the request).
fn is_convention_default(value: &String) -> bool {
    value == CONVENTION_DEFAULT
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ami_owners: vec![OWNER_SELF.to_string()],
            opt_in: convention_default(),
            path_prefix: convention_default(),
            size_tag_prefix: convention_default(),
            home_region: None,
        }
    }
}

impl Settings {
    /// The owners a `$name-prefix:` lookup of `release` searches. Under `None` (a history from
    /// before settings) the release's own list, as it was judged then.
    pub fn ami_owners(settings: Option<&Settings>, release: &Release) -> Vec<String> {
        match settings {
            Some(settings) if release.ami_owners.is_empty() => settings.ami_owners.clone(),
            _ => release.ami_owners.clone(),
        }
    }

    /// What `release`'s resources are judged by: the settings with the owners a lookup searches
    /// (see [`Settings::ami_owners`]). Under `None`, skald's conventions and the release's owners,
    /// as histories from before settings were judged.
    pub fn judging(settings: Option<&Settings>, release: &Release) -> Settings {
        let ami_owners = Settings::ami_owners(settings, release);
        Settings { ami_owners, ..settings.cloned().unwrap_or_default() }
    }

    /// The template ASG's tag that sizes its clones: `<prefix>:min_size` or `<prefix>:max_size`.
    pub fn size_tag(&self, size: &str) -> String {
        format!("{}:{size}", self.size_tag_prefix)
    }

    /// A convention as an operator writes it: 1-32 letters, digits, `-`, `_`, `.`.
    pub fn parse_convention(text: &str) -> Result<String, String> {
        let text = text.trim();
        let ok = (1..=32).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        ok.then(|| text.to_string()).ok_or_else(|| format!("`{text}` must be 1 to 32 letters, digits, `-`, `_` or `.`"))
    }

    /// The problems of `release` under `settings`: owners outside the deployer's list. Under
    /// `None`, the rule of histories from before settings: a name prefix names its owners.
    pub fn check(settings: Option<&Settings>, release: &Release) -> Vec<Problem> {
        match settings {
            None => Settings::legacy(release),
            Some(settings) => settings.check_narrowing(release),
        }
    }

    fn legacy(release: &Release) -> Vec<Problem> {
        let prefix = matches!(AmiRef::parse(&release.ami), Ok(AmiRef::NamePrefix(_)));
        match prefix && release.ami_owners.is_empty() {
            true => vec![Problem::new("ami_owners", format!("must list the accounts a `{AMI_NAME_PREFIX}` AMI may come from"))],
            false => Vec::new(),
        }
    }

    fn check_narrowing(&self, release: &Release) -> Vec<Problem> {
        let allowed = self.ami_owners.join(", ");
        let outside = release.ami_owners.iter().enumerate().filter(|(_, owner)| !self.ami_owners.contains(owner));
        outside
            .map(|(i, owner)| {
                let message =
                    format!("`{owner}` is not among the deployer's AMI owners ({allowed}); a release may narrow that list, never widen it");
                Problem::new(format!("ami_owners[{i}]"), message)
            })
            .collect()
    }

    /// Whether `owner` is a valid entry of an owner list: `self` or a 12-digit account id.
    pub fn is_owner(owner: &str) -> bool {
        owner == OWNER_SELF || (owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Settings as an operator writes them (`SKALD_AMI_OWNERS`: comma-separated), checked.
    pub fn parse_ami_owners(text: &str) -> Result<Vec<String>, String> {
        let owners: Vec<String> = text.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_string).collect();
        if owners.is_empty() || owners.len() > AMI_OWNERS_MAX {
            return Err(format!("must list 1 to {AMI_OWNERS_MAX} AMI owners"));
        }
        match owners.iter().find(|o| !Settings::is_owner(o)) {
            Some(bad) => Err(format!("`{bad}` is neither a 12-digit account id nor `{OWNER_SELF}`")),
            None => Ok(owners),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(ami: &str, owners: &[&str]) -> Release {
        Release { ami: ami.into(), ami_owners: owners.iter().map(|o| o.to_string()).collect(), ..Release::default() }
    }

    #[test]
    fn a_release_narrows_the_deployers_owners_and_never_widens_them() {
        // Given a deployer trusting its image account and itself
        let settings = Settings { ami_owners: vec!["111122223333".into(), OWNER_SELF.into()], ..Settings::default() };

        // Then a release naming none searches the deployer's list, one naming a subset that subset
        let prefix = "$name-prefix:shop-";
        assert_eq!(Settings::ami_owners(Some(&settings), &release(prefix, &[])), settings.ami_owners);
        assert_eq!(Settings::ami_owners(Some(&settings), &release(prefix, &["self"])), ["self"]);
        assert!(Settings::check(Some(&settings), &release(prefix, &["111122223333"])).is_empty());

        // And one naming another account is refused, naming the entry
        let problems = Settings::check(Some(&settings), &release(prefix, &["self", "999999999999"]));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "ami_owners[1]");
        assert!(problems[0].message.contains("never widen"), "{}", problems[0]);
    }

    #[test]
    fn histories_from_before_settings_are_judged_as_they_were() {
        let prefix = "$name-prefix:shop-";
        assert_eq!(Settings::ami_owners(None, &release(prefix, &["999999999999"])), ["999999999999"]);
        assert!(Settings::check(None, &release(prefix, &["999999999999"])).is_empty());
        assert_eq!(Settings::check(None, &release(prefix, &[]))[0].path, "ami_owners");
        assert!(Settings::check(None, &release("ami-0123", &[])).is_empty());
    }

    #[test]
    fn the_operators_list_is_parsed_strictly() {
        assert_eq!(Settings::parse_ami_owners(" 111122223333 , self ").unwrap(), ["111122223333", "self"]);
        assert!(Settings::parse_ami_owners("").unwrap_err().contains("1 to 50"));
        assert!(Settings::parse_ami_owners("amazon").unwrap_err().contains("`amazon`"));
    }
}
