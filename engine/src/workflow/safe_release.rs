//! Odin's safe release (`ValidateSafeRelease`): a release marked `safe_release` may change only
//! the AMI and the user data of the live release (the previous successful deploy's).
//!
//! Pure: the caller finds the live release (in the log) and decides what a difference means.
//! Values are compared as deployed, defaults applied (an absent `timeout` is 600), lists as sets.

use super::release::{Release, Service};
use super::validate::Problem;
use std::collections::BTreeSet;

/// The problems `safe_release` finds in `new`: none unless it asks for the check and a release
/// is live.
pub fn check(live: Option<&Release>, new: &Release) -> Vec<Problem> {
    match live {
        Some(live) if new.safe_release => differences(live, new),
        _ => Vec::new(),
    }
}

/// Every field a safe release may not change that differs between `live` and `new`, by path:
/// subnets, timeout, the set of services, and per service what it runs on and how it scales.
pub fn differences(live: &Release, new: &Release) -> Vec<Problem> {
    let mut out = Differences::default();
    out.set("subnets", &live.subnets, &new.subnets);
    out.value("timeout", live.timeout_secs(), new.timeout_secs());
    for name in live.services.keys().filter(|name| !new.services.contains_key(*name)) {
        out.0.push(Problem::new(format!("services.{name}"), "is live but missing from this release"));
    }
    for (name, service) in &new.services {
        let path = format!("services.{name}");
        match live.services.get(name) {
            Some(live_service) => compare_service(&mut out, &path, (live, live_service), (new, service)),
            None => out.0.push(Problem::new(path, "is not in the live release")),
        }
    }
    out.0
}

/// A service's instances, load balancers and scaling (Odin's list, plus `template`, which a
/// clone's instances come from).
fn compare_service(out: &mut Differences, path: &str, live: (&Release, &Service), new: (&Release, &Service)) {
    let ((live_release, live), (new_release, new)) = (live, new);
    let at = |field: &str| format!("{path}.{field}");
    out.value(&at("template"), &live.template, &new.template);
    out.value(&at("instance_type"), &live.instance_type, &new.instance_type);
    out.set(&at("security_groups"), &live.security_groups, &new.security_groups);
    out.value(&at("profile"), &live.profile, &new.profile);
    out.set(&at("elbs"), &live.elbs, &new.elbs);
    out.set(&at("target_groups"), &live.target_groups, &new.target_groups);
    out.value(&at("ebs_volume_size"), live.ebs_volume_size, new.ebs_volume_size);
    out.value(&at("ebs_volume_type"), live.ebs_volume_type(), new.ebs_volume_type());
    out.value(&at("ebs_device_name"), live.ebs_device_name(), new.ebs_device_name());
    out.value(&at("associate_public_ip_address"), live.associate_public_ip_address, new.associate_public_ip_address);
    compare_autoscaling(out, &at("autoscaling"), (live_release, live), (new_release, new));
}

fn compare_autoscaling(out: &mut Differences, path: &str, live: (&Release, &Service), new: (&Release, &Service)) {
    let ((live_release, live), (new_release, new)) = (live, new);
    let at = |field: &str| format!("{path}.{field}");
    let (a, b) = (&live.autoscaling, &new.autoscaling);
    out.value(&at("min_size"), sizes(live).0, sizes(new).0);
    out.value(&at("max_size"), sizes(live).1, sizes(new).1);
    out.value(&at("max_terms"), a.max_terms(), b.max_terms());
    out.value(&at("default_cooldown"), a.default_cooldown_secs(), b.default_cooldown_secs());
    let grace = |release: &Release, service: &Service| service.autoscaling.health_check_grace_period_secs(release.timeout_secs());
    out.value(&at("health_check_grace_period"), grace(live_release, live), grace(new_release, new));
    // Capacity is computed in basis points: two spreads that plan alike are alike.
    if a.spread_bp() != b.spread_bp() {
        out.differ(&at("spread"), a.spread.unwrap_or(0.0), b.spread.unwrap_or(0.0));
    }
}

/// The sizes as the release gives them: a described service's defaults apply; a clone's absent
/// sizes come from its template's tags, so absent is only equal to absent.
fn sizes(service: &Service) -> (Option<u32>, Option<u32>) {
    let scaling = &service.autoscaling;
    match service.template {
        Some(_) => (scaling.min_size, scaling.max_size),
        None => (Some(scaling.min_size()), Some(scaling.max_size())),
    }
}

#[derive(Default)]
struct Differences(Vec<Problem>);

impl Differences {
    fn value<T: PartialEq + Shown>(&mut self, path: &str, live: T, new: T) {
        if live != new {
            self.differ(path, live, new);
        }
    }

    /// Lists whose order does not matter (subnets, security groups, load balancers).
    fn set(&mut self, path: &str, live: &[String], new: &[String]) {
        if live.iter().collect::<BTreeSet<_>>() != new.iter().collect::<BTreeSet<_>>() {
            self.differ(path, live, new);
        }
    }

    fn differ(&mut self, path: &str, live: impl Shown, new: impl Shown) {
        let (live, new) = (live.shown(), new.shown());
        let message = format!("safe_release: the live release has {live}, this one {new}; only ami and user_data may change");
        self.0.push(Problem::new(path, message));
    }
}

/// A value as a message shows it: `none` for an absent one, lists in brackets.
trait Shown {
    fn shown(&self) -> String;
}

macro_rules! shown_by_display {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> String {
                format!("`{self}`")
            }
        }
    )*};
}

shown_by_display!(u32, u64, f64, bool, str, String);

impl<T: Shown + ?Sized> Shown for &T {
    fn shown(&self) -> String {
        (**self).shown()
    }
}

impl<T: Shown> Shown for Option<T> {
    fn shown(&self) -> String {
        self.as_ref().map_or_else(|| "none".to_string(), Shown::shown)
    }
}

impl Shown for [String] {
    fn shown(&self) -> String {
        format!("[{}]", self.join(", "))
    }
}
