# Test-only additions to moto's EC2, then moto's server (arguments as `moto_server`'s).
#
# moto (5.2.5) does not implement EC2 placement groups: CreatePlacementGroup and
# DescribePlacementGroups answer "not yet implemented". skald creates and reads them (Odin's
# partition groups), and its tests must run the real aws-sdk calls, so this file adds the two
# actions to moto's EC2 responder, keeping groups per account and region as AWS does:
#
# - CreatePlacementGroup: GroupName, Strategy (cluster | spread | partition), PartitionCount
#   (partition only, 1..7, default 2), TagSpecifications (placement-group); a second create of a
#   name answers InvalidPlacementGroup.Duplicate, as EC2 does.
# - DescribePlacementGroups: GroupNames (an unknown name answers InvalidPlacementGroup.Unknown,
#   as EC2 does), Filters group-name / strategy / state; every group is `available` at once.
#
# Nothing else of moto changes. Responses go through moto's own serializer (botocore's model of
# EC2), so the SDK parses them as it parses EC2's.

import sys
import threading

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses import EC2Response
from moto.server import main

STRATEGIES = ("cluster", "spread", "partition")
PARTITIONS_MAX = 7

_groups = {}  # (account, region) -> {name: PlacementGroup as EC2 describes it}
_lock = threading.Lock()


def _in_place(response):
    return _groups.setdefault((response.current_account, response.region), {})


def create_placement_group(self):
    name = self._get_param("GroupName")
    strategy = self._get_param("Strategy")
    count = self._get_param("PartitionCount")
    tags = self._parse_tag_specification("placement-group").get("placement-group", {})
    self.error_on_dryrun()
    if not name:
        raise EC2ClientError("MissingParameter", "The request must contain the parameter GroupName")
    if strategy not in STRATEGIES:
        raise EC2ClientError("InvalidParameterValue", f"Value ({strategy}) for parameter strategy is invalid.")
    if count is not None and strategy != "partition":
        raise EC2ClientError("InvalidParameterCombination", "PartitionCount is valid only with the partition strategy.")
    if strategy == "partition":
        count = int(count) if count is not None else 2
        if not 1 <= count <= PARTITIONS_MAX:
            raise EC2ClientError("InvalidParameterValue", f"Value ({count}) for parameter partitionCount is invalid.")
    with _lock:
        groups = _in_place(self)
        if name in groups:
            raise EC2ClientError("InvalidPlacementGroup.Duplicate", f"The Placement Group '{name}' already exists.")
        group = {
            "GroupName": name,
            "GroupId": f"pg-{len(groups) + 1:017x}",
            "GroupArn": f"arn:aws:ec2:{self.region}:{self.current_account}:placement-group/{name}",
            "State": "available",
            "Strategy": strategy,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        if strategy == "partition":
            group["PartitionCount"] = count
        groups[name] = group
    return ActionResult({"PlacementGroup": group})


def describe_placement_groups(self):
    names = self._get_param("GroupNames", [])
    filters = self._filters_from_querystring()
    with _lock:
        groups = dict(_in_place(self))
    for name in names:
        if name not in groups:
            raise EC2ClientError("InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown.")
    found = [g for n, g in sorted(groups.items()) if not names or n in names]
    for key, field in (("group-name", "GroupName"), ("strategy", "Strategy"), ("state", "State")):
        if key in filters:
            found = [g for g in found if g[field] in filters[key]]
    return ActionResult({"PlacementGroups": found})


EC2Response.create_placement_group = create_placement_group
EC2Response.describe_placement_groups = describe_placement_groups

if __name__ == "__main__":
    main(sys.argv[1:])
