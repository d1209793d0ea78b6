//! Resource checks: which cloud resources a release may use. Given what the cloud reported, when
//! the release is checked, then it resolves, or each problem names the field and the reason.

use skald_engine::codec::parse_release;
use skald_engine::workflow::resources::{self, ExistingAsg, Found, FoundProfile, Lookup, Query, Resolved, Tags};
use skald_engine::workflow::settings::Settings;
use skald_engine::workflow::validate::Problem;
use skald_engine::workflow::Release;
use std::collections::BTreeMap;

/// The check as the runner makes it, with the release's own AMI owners as the allowed ones.
fn check(release: &Release, release_id: &str, lookup: &Lookup) -> Result<Resolved, Vec<Problem>> {
    resources::check(release, release_id, lookup, &Settings { ami_owners: release.ami_owners.clone(), ..Settings::default() })
}

const RELEASE_ID: &str = "01JRESOURCES0000000000001";

fn release() -> Release {
    parse_release(
        r#"{
        "project_name": "acme/shop", "config_name": "prod",
        "subnets": ["private-a", "subnet-0b"], "ami": "base",
        "lifecycle": { "drain": { "transition": "autoscaling:EC2_INSTANCE_TERMINATING", "role": "hooks", "sns": "hooks" } },
        "services": {
            "web": { "instance_type": "t3.micro", "security_groups": ["shop-web"], "elbs": ["shop-elb"], "target_groups": ["shop-tg"], "profile": "shop-web" },
            "worker": { "instance_type": "t3.micro", "security_groups": ["shop-web"] }
        }
    }"#,
    )
    .unwrap()
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn found(id: &str, pairs: &[(&str, &str)]) -> Found {
    Found { id: id.into(), tags: tags(pairs) }
}

fn scoped(service: &str) -> Vec<(&'static str, String)> {
    vec![("ProjectName", "acme/shop".into()), ("ConfigName", "prod".into()), ("ServiceName", service.into())]
}

fn scoped_found(id: &str, service: &str) -> Found {
    Found { id: id.into(), tags: scoped(service).into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
}

/// Everything the release names, found and correctly opted in.
fn lookup() -> Lookup {
    let opted_in = [("DeployWith", "skald")];
    Lookup {
        account_id: "123456789012".into(),
        region: "eu-west-1".into(),
        amis: vec![found("ami-01", &opted_in)],
        subnets: BTreeMap::from([
            ("private-a".into(), vec![found("subnet-0a", &opted_in)]),
            ("subnet-0b".into(), vec![found("subnet-0b", &opted_in)]),
        ]),
        security_groups: BTreeMap::from([("shop-web".into(), vec![scoped_found("sg-01", "_all")])]),
        elbs: BTreeMap::from([("shop-elb".into(), scoped_found("shop-elb", "web"))]),
        target_groups: BTreeMap::from([("shop-tg".into(), scoped_found("arn:tg/shop-tg", "web"))]),
        instance_profiles: BTreeMap::from([(
            "shop-web".into(),
            FoundProfile {
                arn: "arn:aws:iam::123456789012:instance-profile/skald/acme/shop/prod/web/shop-web".into(),
                path: "/skald/acme/shop/prod/web/".into(),
            },
        )]),
        roles: BTreeMap::from([("hooks".into(), "arn:aws:iam::123456789012:role/hooks".into())]),
        topics: BTreeMap::from([("hooks".into(), "arn:aws:sns:eu-west-1:123456789012:hooks".into())]),
        asgs: vec![],
        ..Lookup::default()
    }
}

fn problems(lookup: &Lookup) -> Vec<String> {
    check(&release(), RELEASE_ID, lookup).unwrap_err().iter().map(ToString::to_string).collect()
}

fn asg(name: &str, service: &str, release_id: &str, desired: u32) -> ExistingAsg {
    let mut tags = tags(&[("ProjectName", "acme/shop"), ("ConfigName", "prod"), ("ServiceName", service), ("ReleaseId", release_id)]);
    tags.insert("ManagedBy".into(), "skald".into());
    ExistingAsg {
        name: name.into(),
        desired_capacity: desired,
        tags,
        launch_template: Some(name.into()),
        elbs: vec![],
        target_groups: vec![],
    }
}

#[test]
fn the_query_names_each_resource_once() {
    let query = Query::for_release(&release());
    assert_eq!(query.security_groups.len(), 1, "shared by web and worker, looked up once");
    assert_eq!(query.subnets, ["private-a", "subnet-0b"]);
    assert_eq!(query.roles.len() + query.topics.len(), 2);
}

#[test]
fn opted_in_resources_resolve_to_their_ids() {
    let resolved = check(&release(), RELEASE_ID, &lookup()).unwrap();
    assert_eq!(resolved.ami_id, "ami-01");
    assert_eq!(resolved.subnet_ids, ["subnet-0a", "subnet-0b"]);
    let web = &resolved.services["web"];
    assert_eq!(web.security_group_ids, ["sg-01"]);
    assert_eq!(web.load_balancers(), ["shop-elb", "arn:tg/shop-tg"]);
    assert!(web.instance_profile_arn.as_deref().unwrap().ends_with("/skald/acme/shop/prod/web/shop-web"));
    assert_eq!(resolved.lifecycle_hooks[0].role_arn.as_deref(), Some("arn:aws:iam::123456789012:role/hooks"));
    assert!(web.previous.is_none());
}

#[test]
fn an_ami_must_exist_once_and_opt_in() {
    let mut l = lookup();
    l.amis.clear();
    assert_eq!(problems(&l), ["ami: no AMI `base` found"]);
    l.amis = vec![found("ami-01", &[("DeployWith", "skald")]), found("ami-02", &[("DeployWith", "skald")])];
    assert_eq!(problems(&l), ["ami: 2 AMIs match `base`; it must name exactly one"]);
    l.amis = vec![found("ami-01", &[("DeployWith", "odin")])];
    assert_eq!(problems(&l), ["ami: AMI `base` (ami-01) is not tagged DeployWith=skald"]);
}

#[test]
fn every_subnet_must_be_found_and_opt_in() {
    let mut l = lookup();
    l.subnets.insert("subnet-0b".into(), vec![found("subnet-0b", &[])]);
    l.subnets.remove("private-a");
    assert_eq!(
        problems(&l),
        ["subnets[0]: no subnet `private-a` found", "subnets[1]: subnet `subnet-0b` (subnet-0b) is not tagged DeployWith=skald"]
    );
}

#[test]
fn a_security_group_of_another_project_is_refused_naming_the_tag() {
    let mut l = lookup();
    let mut sg = scoped_found("sg-01", "_all");
    sg.tags.insert("ProjectName".into(), "acme/other".into());
    l.security_groups.insert("shop-web".into(), vec![sg]);
    assert_eq!(
        problems(&l),
        [
            "services.web.security_groups[0]: security group `shop-web` is not tagged ProjectName=acme/shop (or `_all`)",
            "services.worker.security_groups[0]: security group `shop-web` is not tagged ProjectName=acme/shop (or `_all`)"
        ]
    );
}

#[test]
fn a_load_balancer_must_be_tagged_for_the_service_or_all() {
    let mut l = lookup();
    l.elbs.insert("shop-elb".into(), scoped_found("shop-elb", "worker"));
    l.target_groups.insert(
        "shop-tg".into(),
        Found { id: "arn:tg/shop-tg".into(), tags: tags(&[("ProjectName", "_all"), ("ConfigName", "_all"), ("ServiceName", "_all")]) },
    );
    assert_eq!(problems(&l), ["services.web.elbs[0]: classic ELB `shop-elb` is not tagged ServiceName=web (or `_all`)"]);

    l.elbs.remove("shop-elb");
    l.target_groups.insert("shop-tg".into(), found("arn:tg/shop-tg", &[]));
    assert_eq!(
        problems(&l),
        [
            "services.web.elbs[0]: no classic ELB `shop-elb` found",
            "services.web.target_groups[0]: target group `shop-tg` is not tagged ProjectName=acme/shop, ConfigName=prod, ServiceName=web (or `_all`)"
        ]
    );
}

#[test]
fn an_instance_profile_path_may_use_all_from_the_right_only() {
    let with_path = |path: &str| {
        let mut l = lookup();
        l.instance_profiles.insert("shop-web".into(), FoundProfile { arn: "arn:profile".into(), path: path.into() });
        check(&release(), RELEASE_ID, &l).map(|_| ()).map_err(|p| p[0].to_string())
    };
    for ok in ["/skald/acme/shop/prod/web/", "/skald/acme/shop/prod/_all/", "/skald/acme/shop/_all/_all/", "/skald/_all/_all/_all/"] {
        assert_eq!(with_path(ok), Ok(()), "{ok}");
    }
    for bad in ["/skald/acme/shop/_all/web/", "/skald/acme/shop/prod/worker/", "/", "/odin/acme/shop/prod/web/"] {
        let error = with_path(bad).unwrap_err();
        assert!(
            error.starts_with(&format!("services.web.profile: instance profile `shop-web` has path `{bad}`; it must be one of")),
            "{error}"
        );
    }
    let mut l = lookup();
    l.instance_profiles.clear();
    assert_eq!(problems(&l), ["services.web.profile: no instance profile `shop-web` found"]);
}

#[test]
fn lifecycle_roles_and_topics_must_exist() {
    let mut l = lookup();
    l.roles.clear();
    l.topics.clear();
    assert_eq!(problems(&l), ["lifecycle.drain.role: no IAM role `hooks` found", "lifecycle.drain.sns: no SNS topic `hooks` found"]);
}

#[test]
fn the_live_asg_of_each_service_is_the_one_replaced_and_sets_its_capacity() {
    let mut l = lookup();
    l.asgs = vec![asg("web-old", "web", "01JOLD", 3), asg("cron-old", "cron", "01JOLD", 1)];
    let resolved = check(&release(), RELEASE_ID, &l).unwrap();
    assert_eq!(resolved.services["web"].previous.as_ref().unwrap().name, "web-old");
    assert_eq!(resolved.services["web"].capacity.desired, 1, "min 1 max 1 caps the previous 3");
    assert!(resolved.services["worker"].previous.is_none());
    assert_eq!(resolved.dropped.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["cron-old"], "a service the release drops goes");
}

#[test]
fn two_live_asgs_for_one_service_or_one_with_this_release_id_are_refused() {
    let mut l = lookup();
    l.asgs = vec![asg("web-a", "web", "01JA", 1), asg("web-b", "web", "01JB", 1)];
    assert_eq!(problems(&l), ["services.web: two live ASGs serve it (`web-a` and `web-b`); remove one by hand first"]);

    l.asgs = vec![asg("web-a", "web", RELEASE_ID, 1)];
    assert_eq!(problems(&l), [format!("release_id: ASG `web-a` already carries release id {RELEASE_ID}")]);
}

// ---- template services --------------------------------------------------------------------

use skald_engine::workflow::resources::{FoundImage, FoundLaunchTemplate, FoundTemplate};

/// The release with web cloned from `web-template`, and `ami` as given.
fn template_release(ami: &str) -> Release {
    let mut release = release();
    let web = release.services.get_mut("web").unwrap();
    *web = parse_release_service(r#"{ "template": "web-template" }"#);
    release.ami = ami.into();
    release
}

fn parse_release_service(json: &str) -> skald_engine::workflow::release::Service {
    serde_json::from_str(json).unwrap()
}

/// A template scoped to web, on launch template lt-0web at versions 1 to 7 (default 5).
fn template(extra_tags: &[(&str, &str)]) -> FoundTemplate {
    let mut tags: Tags = scoped("web").into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    tags.extend(extra_tags.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    FoundTemplate {
        tags,
        launch_template: Some(FoundLaunchTemplate { id: "lt-0web".into(), name: "web".into(), latest_version: 7, default_version: 5 }),
        subnet_ids: vec!["subnet-0t1".into(), "subnet-0t2".into()],
        elbs: vec![],
        target_group_arns: vec!["arn:tg/web-template-lb".into()],
    }
}

fn lookup_with(template: FoundTemplate) -> Lookup {
    Lookup { templates: BTreeMap::from([("web-template".to_string(), template)]), ..lookup() }
}

#[test]
fn a_template_service_clones_its_template_at_the_latest_version_with_the_new_ami() {
    let resolved =
        check(&template_release("base"), RELEASE_ID, &lookup_with(template(&[("skald:min_size", "2"), ("skald:max_size", "6")])))
            .unwrap_or_else(|p| panic!("{p:?}"));
    let web = &resolved.services["web"];
    let clone = web.template.as_ref().expect("web is a clone");
    assert_eq!((clone.launch_template_id.as_str(), clone.source_version, clone.image_id.as_deref()), ("lt-0web", 7, Some("ami-01")));
    assert_eq!(clone.subnet_ids, ["subnet-0t1", "subnet-0t2"], "the template's subnets");
    assert_eq!(web.target_group_arns, ["arn:tg/web-template-lb"], "the template's load balancers decide health");
    assert_eq!((web.capacity.min_size, web.capacity.max_size), (2, 6), "sizes from the template's tags");
}

#[test]
fn a_rollback_uses_the_named_version_as_it_is() {
    for (ami, version) in
        [("$launchtemplate:3", 3), ("$launchtemplate:$Latest", 7), ("$launchtemplate:$Default", 5), ("$launchtemplate:$LatestMinus:2", 5)]
    {
        let mut release = template_release(ami);
        release.services.remove("worker");
        release.subnets.clear();
        let resolved = check(&release, RELEASE_ID, &lookup_with(template(&[]))).unwrap_or_else(|p| panic!("{ami}: {p:?}"));
        let clone = resolved.services["web"].template.clone().unwrap();
        assert_eq!((clone.source_version, clone.image_id), (version, None), "{ami}");
    }
}

#[test]
fn a_rollback_to_a_version_that_does_not_exist_is_refused() {
    for ami in ["$launchtemplate:8", "$launchtemplate:$LatestMinus:7"] {
        let mut release = template_release(ami);
        release.services.remove("worker");
        release.subnets.clear();
        let problems: Vec<String> =
            check(&release, RELEASE_ID, &lookup_with(template(&[]))).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(problems, ["services.web.template: launch template web has versions 1 to 7: `ami` names none of them"], "{ami}");
    }
}

#[test]
fn a_template_must_exist_be_scoped_and_have_sizes_that_are_numbers() {
    let release = template_release("base");
    let missing: Vec<String> = check(&release, RELEASE_ID, &lookup()).unwrap_err().iter().map(ToString::to_string).collect();
    assert_eq!(missing, ["services.web.template: no template ASG `web-template` found"]);

    let mut foreign = template(&[]);
    foreign.tags.insert("ServiceName".into(), "api".into());
    let unscoped: Vec<String> = check(&release, RELEASE_ID, &lookup_with(foreign)).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(unscoped[0].starts_with("services.web.template: template ASG `web-template` is not tagged ServiceName=web"), "{unscoped:?}");

    let bad_size = check(&release, RELEASE_ID, &lookup_with(template(&[("skald:max_size", "lots")]))).unwrap_err();
    assert_eq!(bad_size[0].to_string(), "services.web.template: tag skald:max_size is `lots`, not a size");

    let mut no_lt = template(&[]);
    no_lt.launch_template = None;
    let unclonable = check(&release, RELEASE_ID, &lookup_with(no_lt)).unwrap_err();
    assert!(unclonable[0].to_string().contains("uses no launch template"), "{unclonable:?}");
}

#[test]
fn a_name_prefix_takes_the_newest_image_of_an_allowed_owner() {
    let mut release = template_release("$name-prefix:shop-app-");
    release.ami_owners = vec!["111122223333".into(), "self".into()];
    let image = |id: &str, name: &str, owner: &str, created: &str| FoundImage {
        id: id.into(),
        name: name.into(),
        owner: owner.into(),
        created: created.into(),
    };
    let mut lookup = lookup_with(template(&[]));
    lookup.images_by_prefix = vec![
        image("ami-old", "shop-app-1", "111122223333", "2026-01-01T00:00:00.000Z"),
        image("ami-own", "shop-app-2", "123456789012", "2026-02-01T00:00:00.000Z"),
        image("ami-foreign", "shop-app-3", "999999999999", "2026-03-01T00:00:00.000Z"),
    ];
    let resolved = check(&release, RELEASE_ID, &lookup).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(resolved.ami_id, "ami-own", "the newest from an allowed owner (`self` is this account)");

    lookup.images_by_prefix.retain(|i| i.id == "ami-foreign");
    let none: Vec<String> = check(&release, RELEASE_ID, &lookup).unwrap_err().iter().map(ToString::to_string).collect();
    assert_eq!(none, ["ami: no available AMI named `shop-app-…` owned by 111122223333, self"]);
}

#[test]
fn the_template_is_never_the_previous_or_a_dropped_asg() {
    // Given a template scoped to web, which the project-config's ASG lookup finds too
    let mut lookup = lookup_with(template(&[]));
    let mut as_asg = asg("web-template", "web", "", 0);
    as_asg.tags.remove("ManagedBy");
    lookup.asgs = vec![as_asg];

    // When a release cloning it (and one no longer naming web at all) is checked
    let resolved = check(&template_release("base"), RELEASE_ID, &lookup).unwrap_or_else(|p| panic!("{p:?}"));

    // Then it is neither web's previous ASG nor an ASG to drop: no deploy ever deletes it
    assert!(resolved.services["web"].previous.is_none());
    assert!(resolved.dropped.is_empty(), "{:?}", resolved.dropped);
}

/// The world of an account set up for Odin: AMIs and subnets tagged `DeployWith=odin`, the
/// profile under `/odin/…`.
fn odin_lookup() -> Lookup {
    let mut lookup = lookup();
    for found in lookup.amis.iter_mut().chain(lookup.subnets.values_mut().flatten()) {
        found.tags.insert("DeployWith".into(), "odin".into());
    }
    let profile = lookup.instance_profiles.get_mut("shop-web").unwrap();
    profile.path = "/odin/acme/shop/prod/web/".into();
    lookup
}

#[test]
fn an_account_set_up_for_odin_deploys_under_odins_conventions_without_retagging() {
    // Given a deployer configured with Odin's conventions
    let odin = Settings { opt_in: "odin".into(), path_prefix: "odin".into(), ..Settings::default() };

    // When Odin's world is judged with them, it resolves
    let resolved = resources::check(&release(), RELEASE_ID, &odin_lookup(), &odin).unwrap_or_else(|p| panic!("{p:?}"));
    assert!(resolved.services["web"].instance_profile_arn.is_some());

    // And under skald's own conventions it is refused, naming each resource and the convention
    let refused: Vec<String> = check(&release(), RELEASE_ID, &odin_lookup()).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(refused.iter().any(|p| p.starts_with("ami:") && p.contains("DeployWith=skald")), "{refused:?}");
    assert!(refused.iter().any(|p| p.starts_with("subnets[0]:") && p.contains("DeployWith=skald")), "{refused:?}");
    assert!(refused.iter().any(|p| p.starts_with("services.web.profile:") && p.contains("/skald/acme/shop/prod/web/")), "{refused:?}");
}

#[test]
fn template_sizes_are_read_from_tags_under_the_deployers_prefix() {
    // Given a template tagged with deployomat's organisation prefix
    let template = template(&[("teak:min_size", "3"), ("teak:max_size", "7")]);
    let teak = Settings { size_tag_prefix: "teak".into(), ..Settings::default() };

    // When it is judged with that prefix, the clone is sized by those tags
    let resolved =
        resources::check(&template_release("base"), RELEASE_ID, &lookup_with(template), &teak).unwrap_or_else(|p| panic!("{p:?}"));
    let capacity = resolved.services["web"].capacity;
    assert_eq!((capacity.min_size, capacity.max_size), (3, 7));
}

#[test]
fn a_target_group_may_opt_in_with_odins_allowed_service_tag() {
    // Given web's target group tagged only AllowedService=acme/shop::prod::web (Odin's form)
    let mut lookup = lookup();
    lookup.target_groups.insert("shop-tg".into(), found("arn:tg/shop-tg", &[("AllowedService", "acme/shop::prod::web")]));

    // Then it is accepted, and one naming another service is not
    assert!(check(&release(), RELEASE_ID, &lookup).is_ok());
    lookup.target_groups.insert("shop-tg".into(), found("arn:tg/shop-tg", &[("AllowedService", "acme/shop::prod::api")]));
    assert!(problems(&lookup).iter().any(|p| p.starts_with("services.web.target_groups[0]:")), "{:?}", problems(&lookup));
}

#[test]
fn a_live_asg_without_a_release_id_is_refused_as_odin_does() {
    // Given a live ASG of web that carries no ReleaseId (made by hand, or by another tool)
    let mut lookup = lookup();
    let mut untagged = asg("shop-web-handmade", "web", "", 2);
    untagged.tags.remove("ReleaseId");
    lookup.asgs = vec![untagged];

    // Then the release is refused before anything launches, naming the service and the ASG
    let problems = problems(&lookup);
    assert!(
        problems.iter().any(|p| p.starts_with("services.web:") && p.contains("shop-web-handmade") && p.contains("ReleaseId")),
        "{problems:?}"
    );
}
