//! infra/ as tested code. The templates are read as CloudFormation reads them (YAML with short-form
//! tags, through the YAML loader of the cfn-lint that the test venv's moto brings) and each
//! least-privilege rule is pinned by a test named after it; the Lambda's permissions are checked
//! against the AWS calls the adapters' sources make, so a new call without its permission (or a
//! permission nothing uses) fails here. Then the stack is created in the local AWS API (moto's
//! CloudFormation) and a deploy runs through the table and queue it made, with `skald worker`
//! standing in for the Lambda (moto cannot run Lambda without Docker).

mod support;

use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use serde_json::Value;
use skald_engine::testing::moto;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::{deploy, Skald};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A template as JSON, intrinsic functions in their long form (`{"Fn::Sub": ...}`).
fn load(name: &str) -> Value {
    let path = repo().join("infra").join(name);
    let out = std::process::Command::new(moto::python())
        .args(["-c", "import json, sys\nfrom cfnlint.decode import cfn_yaml\nprint(json.dumps(cfn_yaml.load(sys.argv[1])))"])
        .arg(&path)
        .output()
        .expect("running the venv's python");
    assert!(out.status.success(), "reading {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn skald_template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| load("skald.yaml"))
}

fn target_template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| load("target-account.yaml"))
}

/// One IAM statement of a role's inline policies, its resources as text (`${EventsTable.Arn}`,
/// `arn:${AWS::Partition}:...`).
#[derive(Clone, Debug, PartialEq)]
struct Statement {
    policy: String,
    sid: String,
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    condition: Value,
}

fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// An ARN or name as the template writes it: a plain string, `Fn::Sub`'s pattern, `${Ref}` or
/// `${Resource.Attribute}`.
fn text(value: &Value) -> String {
    if let Some(s) = value.as_str() {
        return s.to_string();
    }
    if let Some(sub) = value.get("Fn::Sub") {
        return sub.as_str().or_else(|| sub[0].as_str()).unwrap_or_default().to_string();
    }
    if let Some(attr) = value.get("Fn::GetAtt") {
        return format!("${{{}.{}}}", attr[0].as_str().unwrap(), attr[1].as_str().unwrap());
    }
    if let Some(name) = value.get("Ref") {
        return format!("${{{}}}", name.as_str().unwrap());
    }
    panic!("unexpected value {value}");
}

fn statements(template: &Value, role: &str) -> Vec<Statement> {
    let resource = &template["Resources"][role];
    assert_eq!(resource["Type"], "AWS::IAM::Role", "{role}");
    let mut found = Vec::new();
    for policy in resource["Properties"]["Policies"].as_array().unwrap() {
        for s in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            found.push(Statement {
                policy: policy["PolicyName"].as_str().unwrap().to_string(),
                sid: s["Sid"].as_str().unwrap_or_default().to_string(),
                allow: s["Effect"] == "Allow",
                actions: list(&s["Action"]).iter().map(|a| a.as_str().unwrap().to_string()).collect(),
                resources: list(&s["Resource"]).iter().map(text).collect(),
                condition: s["Condition"].clone(),
            });
        }
    }
    found
}

fn lambda() -> Vec<Statement> {
    statements(skald_template(), "LambdaRole")
}

fn allowed(statements: &[Statement], prefix: &str) -> BTreeSet<String> {
    statements.iter().filter(|s| s.allow).flat_map(|s| &s.actions).filter(|a| a.starts_with(prefix)).cloned().collect()
}

fn roles(template: &Value) -> Vec<String> {
    let resources = template["Resources"].as_object().unwrap();
    resources.iter().filter(|(_, r)| r["Type"] == "AWS::IAM::Role").map(|(id, _)| id.clone()).collect()
}

fn condition(statement: &Statement, operator: &str, key: &str) -> Option<Value> {
    statement.condition.get(operator).and_then(|c| c.get(key)).cloned()
}

/// The AWS operations a source file calls on the named clients, as IAM actions: `self.ec2
/// .describe_images()` is `ec2:DescribeImages`. Whitespace is dropped first, so calls split over
/// lines are found too.
fn calls(source: &str, clients: &[(&str, &str)]) -> BTreeSet<String> {
    let code: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    let mut found = BTreeSet::new();
    for (client, service) in clients {
        let needle = format!(".{client}.");
        for (at, _) in code.match_indices(&needle) {
            let rest = &code[at + needle.len()..];
            let op: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !op.is_empty() && rest[op.len()..].starts_with("()") {
                let pascal: String = op.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
                found.insert(format!("{service}:{pascal}"));
            }
        }
    }
    found
}

fn source(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

// ------------------------------------------------------------------ the Lambda's permissions

/// Every AWS call the cloud adapter makes at run time is allowed, and nothing else is allowed
/// except what AWS checks on the caller's behalf inside those calls.
#[test]
fn the_cloud_permissions_are_exactly_the_adapters_calls() {
    let clients = [
        ("ec2", "ec2"),
        ("autoscaling", "autoscaling"),
        ("elb", "elasticloadbalancing"),
        ("elbv2", "elasticloadbalancing"),
        ("iam", "iam"),
        ("sts", "sts"),
        ("cloudwatch", "cloudwatch"),
        ("sns", "sns"),
    ];
    // provision.rs is not here: it builds the example world for demos and tests.
    let mut called = BTreeSet::new();
    for file in ["lookup.rs", "launch.rs", "template.rs", "observe.rs", "traffic.rs", "mod.rs"] {
        called.extend(calls(&source(&format!("engine/src/adapters/aws/{file}")), &clients));
    }
    // GetCallerIdentity needs no permission (it cannot be denied).
    called.remove("sts:GetCallerIdentity");
    let cloud: Vec<Statement> = lambda().into_iter().filter(|s| s.policy == "cloud").collect();
    let granted = allowed(&cloud, "");

    let missing: Vec<&String> = called.difference(&granted).collect();
    assert!(missing.is_empty(), "the adapter calls these without a permission: {missing:?}");
    // Checked by AWS inside CreateLaunchTemplate / CreateAutoScalingGroup / CreateTargetGroup /
    // CreateRule on the caller: tagging on create, the launch template's RunInstances, and
    // passing the instance profile's role.
    let implied: BTreeSet<String> =
        ["ec2:CreateTags", "ec2:RunInstances", "autoscaling:CreateOrUpdateTags", "iam:PassRole", "elasticloadbalancing:AddTags"]
            .iter()
            .map(|a| a.to_string())
            .collect();
    let unused: BTreeSet<String> = granted.difference(&called).cloned().collect();
    assert_eq!(unused, implied, "granted but never called");
}

/// The event log is append-only: the Lambda may put and query, never update; it may delete only
/// lock items (dynamodb:LeadingKeys `lock#*`), and an explicit Deny backs both.
#[test]
fn the_lambda_never_updates_or_deletes_events() {
    let statements = lambda();
    let dynamodb = allowed(&statements, "dynamodb:");
    let expected: BTreeSet<String> =
        ["dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
            .iter()
            .map(|a| a.to_string())
            .collect();
    assert_eq!(dynamodb, expected);

    for s in statements.iter().filter(|s| s.allow && s.actions.iter().any(|a| a == "dynamodb:DeleteItem")) {
        assert_eq!(s.actions, ["dynamodb:DeleteItem"], "{}: deletes stand alone", s.sid);
        assert_eq!(condition(s, "ForAllValues:StringLike", "dynamodb:LeadingKeys"), Some(serde_json::json!(["lock#*"])), "{}", s.sid);
        assert_eq!(condition(s, "Null", "dynamodb:LeadingKeys"), Some(Value::from("false")), "{}", s.sid);
    }
    let denies: Vec<&Statement> = statements.iter().filter(|s| !s.allow).collect();
    assert!(
        denies.iter().any(|s| s.actions.iter().any(|a| a == "dynamodb:UpdateItem") && s.condition.is_null()),
        "UpdateItem is denied outright"
    );
    assert!(
        denies.iter().any(|s| s.actions == ["dynamodb:DeleteItem"]
            && condition(s, "ForAnyValue:StringNotLike", "dynamodb:LeadingKeys") == Some(serde_json::json!(["lock#*"]))),
        "deletes of anything but a lock are denied"
    );
}

/// The permissions above are what the DynamoDB adapter needs: its writes are one
/// TransactWriteItems of Puts, ConditionChecks and (lock release) Deletes, plus one PutItem (the
/// notification cursor, never an event), its reads GetItem and Query. No code path updates or
/// deletes an item any other way.
#[test]
fn the_dynamodb_adapter_writes_only_through_put_check_and_lock_delete() {
    let store = source("engine/src/adapters/dynamodb.rs");
    let called = calls(&store, &[("client", "dynamodb")]);
    let expected: BTreeSet<String> =
        ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:TransactWriteItems"]
            .iter()
            .map(|a| a.to_string())
            .collect();
    assert_eq!(called, expected, "the store's calls");
    // The single-item writes are the notification cursor's (the Lambda's) and the freeze's
    // (`skald freeze` / `unfreeze`, the on-call role's): never an event.
    let puts: Vec<&str> = store.match_indices(".put_item()").map(|(at, _)| &store[at..(at + 200).min(store.len())]).collect();
    assert_eq!(puts.len(), 2, "PutItem calls");
    assert!(puts[0].contains("notified_pk(&deploy)"), "the first PutItem writes the notification cursor");
    assert!(puts[1].contains("freeze_pk(key)"), "the second PutItem writes a freeze");
    let deletes: Vec<&str> = store.match_indices(".delete_item()").map(|(at, _)| &store[at..(at + 200).min(store.len())]).collect();
    assert_eq!(deletes.len(), 1, "DeleteItem calls");
    assert!(deletes[0].contains("freeze_pk(key)"), "the only DeleteItem lifts a freeze");
    for part in ["Put::builder", "ConditionCheck::builder", "Delete::builder"] {
        assert!(store.contains(part), "{part}");
    }
    assert!(!store.contains("Update::builder"), "a transaction part that updates");
    for file in ["engine/src/adapters/dynamodb.rs", "engine/src/runner.rs", "handlers/src/commands.rs", "handlers/src/worker.rs"] {
        let code = source(file);
        for op in [".update_item()", ".batch_write_item()", ".execute_statement()"] {
            assert!(!code.contains(op), "{file} calls {op}");
        }
    }
    for file in ["engine/src/runner.rs", "handlers/src/commands.rs", "handlers/src/worker.rs"] {
        assert!(!source(file).contains(".delete_item()"), "{file} calls .delete_item()");
    }
    // The only Delete is the lock's, keyed by lock_pk.
    let delete = &store[store.find("Delete::builder").unwrap()..];
    assert!(delete[..400].contains("lock_pk(key)"), "the transaction's Delete removes a lock item");
}

/// The queue permissions are the runner's sends and the event source mapping's polling.
#[test]
fn the_lambda_consumes_and_wakes_through_the_inbox_only() {
    let queue = calls(&source("engine/src/adapters/sqs.rs"), &[("client", "sqs")]);
    assert!(queue.contains("sqs:SendMessage") && queue.contains("sqs:ReceiveMessage") && queue.contains("sqs:DeleteMessage"), "{queue:?}");
    let statements = lambda();
    let sqs: Vec<&Statement> = statements.iter().filter(|s| s.allow && s.actions.iter().any(|a| a.starts_with("sqs:"))).collect();
    assert_eq!(sqs.len(), 1);
    let granted: BTreeSet<&str> = sqs[0].actions.iter().map(String::as_str).collect();
    assert_eq!(granted, BTreeSet::from(["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:SendMessage"]));
    assert_eq!(sqs[0].resources, ["${InboxQueue.Arn}"]);
}

/// No Allow anywhere names an action with a wildcard (`*`, `ec2:*`, `ec2:Describe*`).
#[test]
fn no_allowed_action_is_a_wildcard() {
    for (name, template) in [("skald.yaml", skald_template()), ("target-account.yaml", target_template())] {
        for role in roles(template) {
            for s in statements(template, &role).iter().filter(|s| s.allow) {
                for action in &s.actions {
                    assert!(!action.contains('*'), "{name} {role} {}: {action}", s.sid);
                }
            }
        }
    }
}

/// Resource `*` without a condition is only for calls that cannot be scoped and read nothing
/// but descriptions.
#[test]
fn unscoped_resources_are_describe_calls_only() {
    for (name, template) in [("skald.yaml", skald_template()), ("target-account.yaml", target_template())] {
        for role in roles(template) {
            for s in statements(template, &role).iter().filter(|s| s.allow && s.resources.iter().any(|r| r == "*")) {
                if s.condition.is_null() {
                    for action in &s.actions {
                        let verb = action.split(':').nth(1).unwrap();
                        assert!(verb.starts_with("Describe"), "{name} {role} {}: {action} on *", s.sid);
                    }
                }
            }
        }
    }
}

/// Launch templates, placement groups and ASGs are created only carrying ManagedBy=skald
/// (aws:RequestTag), and changed or deleted only when they carry it (aws:ResourceTag); tags go on
/// only with a create. Placement groups are never deleted (other releases may run in them).
/// A template's launch template (not skald's) only gets new versions, and only once it opted in
/// with a ProjectName tag.
#[test]
fn asgs_and_launch_templates_change_only_under_skalds_tags() {
    let creates =
        ["ec2:CreateLaunchTemplate", "ec2:CreatePlacementGroup", "autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags"];
    let changes = [
        "ec2:DeleteLaunchTemplate",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:DeleteAutoScalingGroup",
        "autoscaling:DetachLoadBalancers",
        "autoscaling:DetachLoadBalancerTargetGroups",
        "autoscaling:PutScalingPolicy",
        "autoscaling:PutLifecycleHook",
        "autoscaling:EnableMetricsCollection",
        "autoscaling:PutWarmPool",
    ];
    let skald = Some(Value::from("skald"));
    for s in lambda().iter().filter(|s| s.allow) {
        for action in &s.actions {
            if creates.contains(&action.as_str()) {
                assert_eq!(condition(s, "StringEquals", "aws:RequestTag/ManagedBy"), skald, "{}: {action}", s.sid);
            }
            if changes.contains(&action.as_str()) {
                assert_eq!(condition(s, "StringEquals", "aws:ResourceTag/ManagedBy"), skald, "{}: {action}", s.sid);
            }
            if action == "ec2:CreateLaunchTemplateVersion" {
                assert_eq!(s.actions, [action.as_str()], "{}: stands alone", s.sid);
                assert_eq!(condition(s, "Null", "aws:ResourceTag/ProjectName"), Some(Value::from("false")), "{}: opted in", s.sid);
            }
            if action == "ec2:CreateTags" {
                let on_create = condition(s, "StringEquals", "ec2:CreateAction");
                assert!(
                    ["CreateLaunchTemplate", "CreatePlacementGroup", "RunInstances"]
                        .map(Value::from)
                        .iter()
                        .any(|c| on_create.as_ref() == Some(c)),
                    "{}: CreateTags only while creating",
                    s.sid
                );
            }
            assert_ne!(action, "ec2:DeletePlacementGroup", "{}: placement groups are never deleted", s.sid);
            if action.starts_with("autoscaling:") && !action.starts_with("autoscaling:Describe") {
                assert!(creates.contains(&action.as_str()) || changes.contains(&action.as_str()), "{}: unexpected {action}", s.sid);
            }
        }
    }
    let deny = lambda().into_iter().find(|s| s.sid == "NeverTakeOverOthersAsgs").expect("the take-over deny");
    assert!(!deny.allow && deny.actions.contains(&"autoscaling:CreateOrUpdateTags".to_string()));
}

/// Traffic shifting: target groups and listener rules are created only carrying ManagedBy=skald,
/// tagged only while being created, and changed or deleted only when they carry it; nothing else
/// of ELBv2's changes.
#[test]
fn target_groups_and_listener_rules_change_only_under_skalds_tags() {
    let creates = ["elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:CreateRule"];
    let changes = [
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:ModifyRule",
        "elasticloadbalancing:DeleteRule",
    ];
    let drains = ["elasticloadbalancing:DeregisterInstancesFromLoadBalancer", "elasticloadbalancing:DeregisterTargets"];
    let skald = Some(Value::from("skald"));
    let mut seen = BTreeSet::new();
    for s in lambda().iter().filter(|s| s.allow) {
        for action in s.actions.iter().filter(|a| a.starts_with("elasticloadbalancing:") && !a.starts_with("elasticloadbalancing:Describe"))
        {
            seen.insert(action.clone());
            if creates.contains(&action.as_str()) {
                assert_eq!(condition(s, "StringEquals", "aws:RequestTag/ManagedBy"), skald, "{}: {action}", s.sid);
            } else if changes.contains(&action.as_str()) {
                assert_eq!(condition(s, "StringEquals", "aws:ResourceTag/ManagedBy"), skald, "{}: {action}", s.sid);
            } else if action == "elasticloadbalancing:AddTags" {
                assert_eq!(condition(s, "StringEquals", "aws:RequestTag/ManagedBy"), skald, "{}: {action}", s.sid);
                let on_create = condition(s, "StringEquals", "elasticloadbalancing:CreateAction");
                assert_eq!(on_create, Some(Value::from(vec!["CreateTargetGroup", "CreateRule"])), "{}: AddTags only while creating", s.sid);
            } else {
                assert!(drains.contains(&action.as_str()), "{}: unexpected {action}", s.sid);
            }
        }
    }
    for action in creates.iter().chain(&changes) {
        assert!(seen.contains(*action), "{action} is not granted: traffic shifting needs it");
    }
}

/// iam:PassRole only for roles under /<PathPrefix>/ (the instance-profile path convention, `skald`
/// unless the operator sets another, e.g. `odin`) and only to EC2 (iam:PassedToService).
#[test]
fn pass_role_is_for_skald_instance_roles_and_ec2_only() {
    for (name, template) in [("skald.yaml", skald_template()), ("target-account.yaml", target_template())] {
        assert_eq!(template["Parameters"]["PathPrefix"]["Default"], skald_engine::workflow::settings::CONVENTION_DEFAULT, "{name}");
        for role in roles(template) {
            let statements = statements(template, &role);
            for s in statements.iter().filter(|s| s.allow && s.actions.iter().any(|a| a == "iam:PassRole")) {
                assert_eq!(s.actions, ["iam:PassRole"], "{name} {role} {}", s.sid);
                assert_eq!(s.resources, ["arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${PathPrefix}/*"], "{name} {role} {}", s.sid);
                assert_eq!(condition(s, "StringEquals", "iam:PassedToService"), Some(Value::from("ec2.amazonaws.com")));
            }
        }
    }
}

/// The Lambda assumes only the configured target role, only in the listed accounts.
#[test]
fn the_lambda_assumes_only_the_target_role_of_listed_accounts() {
    let statements = lambda();
    let assume: Vec<&Statement> = statements.iter().filter(|s| s.allow && s.actions.iter().any(|a| a.starts_with("sts:"))).collect();
    assert_eq!(assume.len(), 1);
    assert_eq!(assume[0].actions, ["sts:AssumeRole"]);
    assert_eq!(assume[0].resources, ["arn:${AWS::Partition}:iam::*:role/${TargetRoleName}"]);
    assert_eq!(condition(assume[0], "StringEquals", "aws:ResourceAccount"), Some(serde_json::json!({"Ref": "TargetAccountIds"})));
}

/// The target account's role has the Lambda's cloud permissions, the same statements, and is
/// trusted by the Lambda's role alone.
#[test]
fn the_target_account_role_mirrors_the_lambdas_cloud_permissions() {
    let ours: Vec<Statement> = lambda().into_iter().filter(|s| s.policy == "cloud").collect();
    let theirs: Vec<Statement> = statements(target_template(), "DeployerRole").into_iter().filter(|s| s.policy == "cloud").collect();
    assert_eq!(theirs, ours);
    let trust = &target_template()["Resources"]["DeployerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    assert_eq!(list(trust).len(), 1);
    assert_eq!(trust[0]["Principal"], serde_json::json!({"AWS": {"Ref": "DeployerRoleArn"}}));
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
    assert_eq!(skald_template()["Parameters"]["TargetRoleName"]["Default"], target_template()["Parameters"]["RoleName"]["Default"]);
    assert_eq!(skald_template()["Parameters"]["TargetRoleName"]["Default"], skald_engine::adapters::aws::TARGET_ROLE_DEFAULT);
}

/// A release deploys in its `aws_region`; both deployer roles deny every cloud call outside the
/// regions the stack lists (`DeployRegions`, or the stack's own region), so a release naming
/// another region cannot be deployed where the operator did not opt in.
#[test]
fn cloud_calls_are_denied_outside_the_listed_regions() {
    for (template, role) in [(skald_template(), "LambdaRole"), (target_template(), "DeployerRole")] {
        let deny: Vec<Statement> = statements(template, role).into_iter().filter(|s| s.policy == "regions").collect();
        assert_eq!(deny.len(), 1, "{role}");
        assert!(!deny[0].allow, "{role}: a deny");
        let services: BTreeSet<&str> = deny[0].actions.iter().map(|a| a.split(':').next().unwrap()).collect();
        assert_eq!(services, BTreeSet::from(["ec2", "autoscaling", "elasticloadbalancing", "cloudwatch"]), "{role}");
        let regions = &deny[0].condition["StringNotEquals"]["aws:RequestedRegion"];
        assert_eq!(regions["Fn::If"][0], "RegionsListed", "{role}");
        assert_eq!(regions["Fn::If"][2], serde_json::json!([{"Ref": "AWS::Region"}]), "{role}: the stack's region when none is listed");
        assert_eq!(template["Parameters"]["DeployRegions"]["Type"], "CommaDelimitedList", "{role}");
    }
}

// ------------------------------------------------------------------ people and systems

/// The producer may send to the inbox and do nothing else.
#[test]
fn the_producer_may_only_send_to_the_inbox() {
    let statements = statements(skald_template(), "ProducerRole");
    assert_eq!(statements.len(), 1);
    assert!(statements[0].allow && statements[0].condition.is_null());
    assert_eq!(statements[0].actions, ["sqs:SendMessage"]);
    assert_eq!(statements[0].resources, ["${InboxQueue.Arn}"]);
}

/// On-call may send to the inbox (halt, cancel, undeploy), read the table, and write freeze items
/// (`freeze#*`, `skald freeze` / `unfreeze`) and nothing else: a Deny backs the scoping.
#[test]
fn on_call_writes_freeze_items_only() {
    let statements = statements(skald_template(), "OnCallRole");
    let dynamodb = allowed(&statements, "dynamodb:");
    let expected: BTreeSet<String> =
        ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"].iter().map(|a| a.to_string()).collect();
    assert_eq!(dynamodb, expected);
    assert_eq!(allowed(&statements, "sqs:"), BTreeSet::from(["sqs:SendMessage".to_string()]));
    for s in statements.iter().filter(|s| s.allow && s.actions.iter().any(|a| a == "dynamodb:PutItem" || a == "dynamodb:DeleteItem")) {
        assert_eq!(s.actions, ["dynamodb:PutItem", "dynamodb:DeleteItem"], "{}: writes stand alone", s.sid);
        assert_eq!(s.resources, ["${EventsTable.Arn}"], "{}", s.sid);
        assert_eq!(condition(s, "ForAllValues:StringLike", "dynamodb:LeadingKeys"), Some(serde_json::json!(["freeze#*"])), "{}", s.sid);
        assert_eq!(condition(s, "Null", "dynamodb:LeadingKeys"), Some(Value::from("false")), "{}", s.sid);
    }
    let deny = statements.iter().find(|s| !s.allow).expect("a Deny backs the scoping");
    // (TransactWriteItems is no IAM action: each part of a transaction is authorised as itself.)
    for action in ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"] {
        assert!(deny.actions.iter().any(|a| a == action), "{action} is denied outside freeze items");
    }
    assert_eq!(condition(deny, "ForAnyValue:StringNotLike", "dynamodb:LeadingKeys"), Some(serde_json::json!(["freeze#*"])));
    // The freeze items are the store's: the same prefix.
    let key = skald_engine::ports::LockKey { project: "p".into(), config: "c".into() };
    assert!(skald_engine::adapters::dynamodb::freeze_pk(&key).starts_with("freeze#"));
}

/// The auditor reads the table and its indexes and can change nothing.
#[test]
fn the_auditor_is_read_only_on_the_table() {
    let statements = statements(skald_template(), "AuditorRole");
    let reads = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"];
    for s in &statements {
        assert!(s.allow);
        for action in &s.actions {
            assert!(reads.contains(&action.as_str()), "{action}");
        }
        assert_eq!(s.resources, ["${EventsTable.Arn}", "${EventsTable.Arn}/index/*"]);
    }
}

// ------------------------------------------------------------------ resources

fn resource(id: &str) -> &'static Value {
    &skald_template()["Resources"][id]["Properties"]
}

/// The table as `create_table` makes it (keys, the sparse `locks` index), on demand, with
/// point-in-time recovery, deletion protection and encryption.
#[test]
fn the_table_is_the_adapters_table_protected() {
    let table = resource("EventsTable");
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["KeySchema"],
        serde_json::json!([{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    );
    let index = &table["GlobalSecondaryIndexes"][0];
    assert_eq!(index["IndexName"], skald_engine::adapters::dynamodb::LOCKS_INDEX);
    assert_eq!(
        index["KeySchema"],
        serde_json::json!([{"AttributeName": "held", "KeyType": "HASH"}, {"AttributeName": "pk", "KeyType": "RANGE"}])
    );
    assert_eq!(index["Projection"]["ProjectionType"], "ALL");
    assert_eq!(table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true);
    assert_eq!(table["DeletionProtectionEnabled"], true);
    assert_eq!(table["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(skald_template()["Resources"]["EventsTable"]["DeletionPolicy"], "Retain");
}

/// The inbox's visibility timeout is at least six times the function's timeout, failures are
/// reported per record, and the dead-letter queue catches what keeps failing.
#[test]
fn the_inbox_fits_the_function() {
    let queue = resource("InboxQueue");
    let function = resource("Function");
    let timeout_secs = function["Timeout"].as_u64().unwrap();
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout_secs, "visibility ≥ 6 × {timeout_secs} s");
    assert_eq!(queue["RedrivePolicy"]["deadLetterTargetArn"], serde_json::json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}));
    let receives = queue["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap();
    assert!((2..=10).contains(&receives), "{receives}");
    assert_eq!(resource("InboxEventSource")["FunctionResponseTypes"], serde_json::json!(["ReportBatchItemFailures"]));
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(function["Architectures"], serde_json::json!(["arm64"]));
    assert_eq!(function["Handler"], "bootstrap");
    let env = &function["Environment"]["Variables"];
    use skald_handlers::aws_env::{
        AMI_OWNERS_VAR, OPT_IN_VAR, PATH_PREFIX_VAR, QUEUE_URL_VAR, SIZE_TAG_PREFIX_VAR, TABLE_VAR, TARGET_ROLE_VAR,
    };
    for var in [TABLE_VAR, QUEUE_URL_VAR, TARGET_ROLE_VAR, AMI_OWNERS_VAR, OPT_IN_VAR, PATH_PREFIX_VAR, SIZE_TAG_PREFIX_VAR] {
        assert!(env.get(var).is_some(), "{var}");
    }
}

/// The FailureDirty alarm watches the metric the Lambda emits, under the same names.
#[test]
fn the_failure_dirty_alarm_watches_the_lambdas_metric() {
    let alarm = resource("FailureDirtyAlarm");
    assert_eq!(alarm["Namespace"], skald_handlers::metrics::NAMESPACE);
    assert_eq!(alarm["MetricName"], skald_handlers::metrics::FAILURE_DIRTY);
    assert_eq!(
        alarm["Dimensions"],
        serde_json::json!([{"Name": skald_handlers::metrics::DIMENSION_TABLE, "Value": {"Ref": "EventsTable"}}])
    );
    for id in ["DeadLetterAlarm", "FunctionErrorsAlarm", "FailureDirtyAlarm"] {
        assert_eq!(resource(id)["AlarmActions"], serde_json::json!([{"Ref": "AlarmTopic"}]), "{id}");
    }
}

/// Every checkov suppression says why, next to it; cfn-lint has none.
#[test]
fn every_suppression_is_justified() {
    for (name, template) in [("skald.yaml", skald_template()), ("target-account.yaml", target_template())] {
        for (id, r) in template["Resources"].as_object().unwrap() {
            for skip in list(&r["Metadata"]["checkov"]["skip"]) {
                let comment = skip["comment"].as_str().unwrap_or_default();
                assert!(comment.len() >= 40, "{name} {id} {}: a reason, not a shrug: {comment:?}", skip["id"]);
            }
            assert!(r["Metadata"].get("cfn-lint").is_none(), "{name} {id}: cfn-lint suppression");
        }
    }
}

// ------------------------------------------------------------------ the stack on the local API

/// Creates the stack in moto's CloudFormation (without the function, its event source, schedule
/// and alarms: moto cannot run a Lambda without Docker and has no CloudFormation CloudWatch
/// alarms) and runs a deploy through the table and queue it made, a `skald worker` process in
/// the Lambda's place.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_runs_through_the_stacks_table_and_queue() {
    let config = moto::aws_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let stack = moto::unique_name("stack");
    let table = moto::unique_name("infra");
    let queue = moto::unique_name("infra");
    let parameter = |key: &str, value: &str| Parameter::builder().parameter_key(key).parameter_value(value).build();

    cfn.create_stack()
        .stack_name(&stack)
        .template_body(std::fs::read_to_string(repo().join("infra/skald.yaml")).unwrap())
        .parameters(parameter("TableName", &table))
        .parameters(parameter("QueueName", &queue))
        .parameters(parameter("DeployFunction", "false"))
        .parameters(parameter("CreateAlarms", "false"))
        .parameters(parameter("CodeBucket", "unused-bucket"))
        .parameters(parameter("CodeKey", "unused.zip"))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .unwrap();
    let outputs = wait_for_stack(&cfn, &stack).await;
    let output = |key: &str| outputs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("output {key}"));
    assert_eq!(output("TableName"), table);
    let queue_url = output("QueueUrl");

    // The table has the adapter's keys and index: compare with one `create_table` makes.
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let reference = moto::unique_name("reference");
    skald_engine::adapters::dynamodb::create_table(&dynamodb, &reference).await.unwrap();
    let shape = |t: &aws_sdk_dynamodb::types::TableDescription| {
        let mut attributes: Vec<String> =
            t.attribute_definitions().iter().map(|a| format!("{}:{}", a.attribute_name(), a.attribute_type())).collect();
        attributes.sort();
        let keys: Vec<String> = t.key_schema().iter().map(|k| format!("{}:{}", k.attribute_name(), k.key_type())).collect();
        let indexes: Vec<String> = t
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                let keys: Vec<String> = i.key_schema().iter().map(|k| format!("{}:{}", k.attribute_name(), k.key_type())).collect();
                format!("{} {keys:?} {:?}", i.index_name().unwrap_or_default(), i.projection().and_then(|p| p.projection_type()))
            })
            .collect();
        (attributes, keys, indexes)
    };
    let ours = dynamodb.describe_table().table_name(&table).send().await.unwrap();
    let made = dynamodb.describe_table().table_name(&reference).send().await.unwrap();
    assert_eq!(shape(ours.table().unwrap()), shape(made.table().unwrap()));

    // The queue's redrive and visibility are the template's.
    let sqs = aws_sdk_sqs::Client::new(&config);
    let attributes =
        sqs.get_queue_attributes().queue_url(&queue_url).attribute_names(aws_sdk_sqs::types::QueueAttributeName::All).send().await.unwrap();
    let attributes = attributes.attributes().unwrap();
    assert_eq!(attributes[&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout], "1800");
    let redrive: Value = serde_json::from_str(&attributes[&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy]).unwrap();
    assert!(redrive["deadLetterTargetArn"].as_str().unwrap().ends_with(&format!(":{queue}-dlq")), "{redrive}");

    // A deploy, sent by the CLI to the stack's queue, run by a worker on the stack's table.
    let skald = Skald::start_on("infra-stack", table, queue_url).await;
    let file = skald.release_file(&skald.release, "release.json");
    let (out, stdout) = deploy(&skald, &file, true);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("=> Success"), "{stdout}");
    assert_eq!(skald.asg_names().await.len(), 2);
}

/// Waits (at most 60 s) for the stack to be created; returns its outputs.
async fn wait_for_stack(cfn: &aws_sdk_cloudformation::Client, stack: &str) -> Vec<(String, String)> {
    let started = Instant::now();
    loop {
        let described = cfn.describe_stacks().stack_name(stack).send().await.unwrap();
        let stack = &described.stacks()[0];
        match stack.stack_status() {
            Some(StackStatus::CreateComplete) => {
                return stack
                    .outputs()
                    .iter()
                    .map(|o| (o.output_key().unwrap_or_default().to_string(), o.output_value().unwrap_or_default().to_string()))
                    .collect()
            }
            Some(StackStatus::CreateInProgress) if started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("stack {other:?}: {:?}", stack.stack_status_reason()),
        }
    }
}

/// Transitions are published only to the destination configured, with only the call that
/// publishes, and without one there is no grant at all.
#[test]
fn the_lambda_publishes_transitions_only_to_its_configured_destination() {
    let template = skald_template();
    for (policy, condition, action, parameter) in [
        ("NotifyTopicPolicy", "NotifyTopic", "sns:Publish", "NotifyTopicArn"),
        ("NotifyBusPolicy", "NotifyBus", "events:PutEvents", "NotifyEventBusArn"),
    ] {
        let resource = &template["Resources"][policy];
        assert_eq!((resource["Type"].as_str(), resource["Condition"].as_str()), (Some("AWS::IAM::Policy"), Some(condition)), "{policy}");
        assert_eq!(resource["Properties"]["Roles"], serde_json::json!([{"Ref": "LambdaRole"}]), "{policy}");
        let statements = resource["Properties"]["PolicyDocument"]["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1, "{policy}");
        assert_eq!((statements[0]["Action"].as_str(), text(&statements[0]["Resource"])), (Some(action), format!("${{{parameter}}}")));
    }
    let env = &template["Resources"]["Function"]["Properties"]["Environment"]["Variables"];
    assert!(env["SKALD_NOTIFY"].get("Fn::If").is_some(), "SKALD_NOTIFY is set only with a destination");
    // The role itself may read a lifecycle hook's topic (GetTopicAttributes), never publish.
    let sns: Vec<String> = allowed(&lambda(), "sns:").into_iter().collect();
    assert_eq!(sns, ["sns:GetTopicAttributes"], "no publishing in the role itself");
    assert!(allowed(&lambda(), "events:").is_empty(), "no publishing in the role itself");
}
