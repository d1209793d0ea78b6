//! Services cloned from a template ASG (deployomat's way), end to end on the simulated cloud:
//! given a template (a launch template at some version, subnets, a target group, size tags) /
//! when releases of it deploy, or roll back to a launch template version / then the clones.

mod support;

use skald_engine::adapters::local::{template_for, Local};
use skald_engine::workflow::release::Service;
use skald_engine::workflow::resources::FoundTemplate;
use skald_engine::workflow::state::End;
use skald_engine::workflow::{Command, Event, Release};
use support::*;

const TEMPLATE: &str = "web-template";

/// The example release with web cloned from `TEMPLATE` (worker stays described).
fn clone_release() -> Release {
    let mut release = release();
    let web: Service = serde_json::from_str(&format!(r#"{{ "template": "{TEMPLATE}" }}"#)).unwrap();
    release.services.insert("web".into(), web);
    release
}

/// Given: the example world plus a template for web on launch template version `latest`, sized
/// 2 to 3 by its tags, in the example's first subnet, joined to a target group of its own.
fn world_with_template(release: &Release, latest: u64) -> Local {
    let local = world(release);
    let scope = [("ProjectName", release.project_name.as_str()), ("ConfigName", release.config_name.as_str()), ("ServiceName", "web")];
    let target_group = local.cloud.add_target_group("web-template-tg", &scope);
    let template = FoundTemplate {
        subnet_ids: vec!["subnet-00000000000000000".into()],
        target_group_arns: vec![target_group],
        ..template_for(release, "web", latest, (2, 3))
    };
    local.cloud.add_template(TEMPLATE, template);
    local
}

/// The launch spec a history announced for web.
fn web_launch(local: &Local, deploy: &str) -> skald_engine::workflow::LaunchSpec {
    local
        .history(deploy)
        .into_iter()
        .find_map(|r| match r.event {
            Event::CommandStarted { command: Command::Launch { spec } } if spec.service == "web" => Some(*spec),
            _ => None,
        })
        .expect("web was launched")
}

#[test]
fn a_clone_gets_a_new_launch_template_version_the_templates_subnets_load_balancers_and_sizes() {
    // Given a template at launch template version 4
    let release = clone_release();
    let local = world_with_template(&release, 4);

    // When a release of it deploys
    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then web is a clone: a new version from version 4 with the release's AMI, in the
    // template's subnet, joined to its target group, sized by its tags
    assert_eq!(state.end, Some(End::Success));
    let spec = web_launch(&local, &id(1));
    let clone = spec.template.as_ref().expect("web is cloned");
    assert_eq!((clone.source_version, clone.image_id.as_deref()), (4, Some("ami-0a1b2c3d4e5f60718")));
    assert_eq!(spec.subnet_ids, ["subnet-00000000000000000"]);
    assert_eq!(spec.target_group_arns, local.cloud.template(TEMPLATE).unwrap().target_group_arns);
    assert_eq!((state.services["web"].plan.min_size, state.services["web"].plan.max_size), (2, 3));
    assert_eq!(local.cloud.template(TEMPLATE).unwrap().launch_template.unwrap().latest_version, 5, "one new version");
    // And the clone runs on the template's launch template, which a later teardown leaves alone
    assert_eq!(local.cloud.asgs()[&state.services["web"].asg].launch_template, "web");
}

#[test]
fn a_second_release_replaces_the_clone_and_keeps_the_template() {
    // Given a first clone live
    let release = clone_release();
    let local = world_with_template(&release, 1);
    local.submit(&release, &id(1));
    run_until_end(&local, &id(1));
    let first = local.state(&id(1)).services["web"].asg.clone();

    // When the next release deploys
    local.submit(&release, &id(2));
    let state = run_until_end(&local, &id(2));

    // Then the first clone is gone, the template and its launch template stay, and the second
    // clone started from the version the first one made
    assert_eq!(state.end, Some(End::Success));
    assert!(!local.cloud.asg_names().contains(&first));
    assert_eq!(web_launch(&local, &id(2)).template.unwrap().source_version, 2);
    assert_eq!(local.cloud.template(TEMPLATE).unwrap().launch_template.unwrap().latest_version, 3);
}

#[test]
fn a_rollback_runs_a_named_launch_template_version_as_it_is() {
    // Given a template whose launch template is at version 6, and a release of web alone
    let mut release = clone_release();
    release.services.remove("worker");
    release.subnets.clear();
    release.ami = "$launchtemplate:$LatestMinus:2".into();
    let local = world_with_template(&release, 6);

    // When it deploys
    local.submit(&release, &id(1));
    let state = run_until_end(&local, &id(1));

    // Then the clone runs version 4, and no version was written
    assert_eq!(state.end, Some(End::Success), "{:?}", types(&local.history(&id(1))));
    let clone = web_launch(&local, &id(1)).template.unwrap();
    assert_eq!((clone.source_version, clone.image_id), (4, None));
    assert_eq!(local.cloud.template(TEMPLATE).unwrap().launch_template.unwrap().latest_version, 6);
}
