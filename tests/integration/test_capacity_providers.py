"""Capacity providers: built-ins, Create/Describe/Update/Delete, name rules, tags."""
import pytest

from ecs_helpers import arn, raises_code, unique

ASG_ARN = ("arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:"
           "11111111-2222-3333-4444-555555555555:autoScalingGroupName/{name}")


def _create(ecs, name=None, **kw):
    name = name or unique("cp")
    asg = {"autoScalingGroupArn": ASG_ARN.format(name=name)}
    asg.update(kw.pop("asg", {}))
    return ecs.create_capacity_provider(name=name, autoScalingGroupProvider=asg,
                                        **kw)["capacityProvider"]


def test_builtin_providers_are_described(ecs):
    out = ecs.describe_capacity_providers()
    by_name = {p["name"]: p for p in out["capacityProviders"]}
    assert {"FARGATE", "FARGATE_SPOT"} <= set(by_name)
    for n in ("FARGATE", "FARGATE_SPOT"):
        assert by_name[n]["status"] == "ACTIVE"
        assert by_name[n]["capacityProviderArn"] == arn(f"capacity-provider/{n}")
    named = ecs.describe_capacity_providers(capacityProviders=["FARGATE_SPOT"])
    assert [p["name"] for p in named["capacityProviders"]] == ["FARGATE_SPOT"]


def test_create_capacity_provider(ecs):
    name = unique("cp")
    p = _create(ecs, name, asg={
        "managedScaling": {"status": "ENABLED", "targetCapacity": 90},
        "managedTerminationProtection": "DISABLED"})
    assert p["name"] == name
    assert p["capacityProviderArn"] == arn(f"capacity-provider/{name}")
    assert p["status"] == "ACTIVE"
    asg = p["autoScalingGroupProvider"]
    assert asg["autoScalingGroupArn"] == ASG_ARN.format(name=name)
    assert asg["managedScaling"]["status"] == "ENABLED"
    assert asg["managedScaling"]["targetCapacity"] == 90
    assert asg["managedTerminationProtection"] == "DISABLED"

    d = ecs.describe_capacity_providers(capacityProviders=[name])
    assert d["failures"] == []
    assert d["capacityProviders"][0]["autoScalingGroupProvider"]["autoScalingGroupArn"] == \
        ASG_ARN.format(name=name)
    # Listed alongside the built-ins when describing everything.
    all_names = [x["name"] for x in ecs.describe_capacity_providers()["capacityProviders"]]
    assert name in all_names


def test_describe_unknown_capacity_provider_is_a_failure(ecs):
    out = ecs.describe_capacity_providers(capacityProviders=["nothere"])
    assert out["capacityProviders"] == []
    assert out["failures"][0]["reason"] == "MISSING"


def test_create_duplicate_capacity_provider(ecs):
    name = unique("cp")
    _create(ecs, name)
    with raises_code("ClientException"):
        _create(ecs, name)


@pytest.mark.parametrize("name", [
    "aws-provider", "AWSprovider", "ecs-provider", "ECSx", "fargate-mine", "Fargate_x",
    "FARGATE", "has space", "", "x" * 256, "slash/no",
])
def test_capacity_provider_name_rules(ecs, name):
    with raises_code("ClientException", "InvalidParameterException"):
        ecs.create_capacity_provider(
            name=name, autoScalingGroupProvider={"autoScalingGroupArn": ASG_ARN.format(name="x")})


def test_create_capacity_provider_requires_a_provider(server):
    # botocore 1.29 marks autoScalingGroupProvider required, so send it raw.
    r = server.raw("CreateCapacityProvider", {"name": unique("cp")})
    assert r.status == 400, r
    assert r.error_type in ("ClientException", "InvalidParameterException"), r


def test_update_capacity_provider(ecs):
    name = unique("cp")
    _create(ecs, name)
    out = ecs.update_capacity_provider(name=name, autoScalingGroupProvider={
        "managedScaling": {"status": "ENABLED", "targetCapacity": 75,
                           "minimumScalingStepSize": 2, "maximumScalingStepSize": 20},
        "managedTerminationProtection": "DISABLED"})["capacityProvider"]
    ms = out["autoScalingGroupProvider"]["managedScaling"]
    assert ms["status"] == "ENABLED" and ms["targetCapacity"] == 75
    assert out.get("updateStatus") == "UPDATE_COMPLETE"
    d = ecs.describe_capacity_providers(capacityProviders=[name])["capacityProviders"][0]
    ms = d["autoScalingGroupProvider"]["managedScaling"]
    assert (ms["targetCapacity"], ms["minimumScalingStepSize"], ms["maximumScalingStepSize"]) == \
        (75, 2, 20)
    # The ASG itself does not change.
    assert d["autoScalingGroupProvider"]["autoScalingGroupArn"] == ASG_ARN.format(name=name)


def test_update_unknown_capacity_provider(ecs):
    with raises_code("ClientException", "InvalidParameterException"):
        ecs.update_capacity_provider(name=unique("cp"), autoScalingGroupProvider={
            "managedScaling": {"status": "ENABLED"}})


def test_delete_capacity_provider_refused_while_used_by_cluster(ecs):
    name = unique("cp")
    _create(ecs, name)
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    ecs.put_cluster_capacity_providers(cluster=cluster, capacityProviders=[name],
                                       defaultCapacityProviderStrategy=[
                                           {"capacityProvider": name, "weight": 1}])
    with raises_code("ClientException", "ResourceInUseException"):
        ecs.delete_capacity_provider(capacityProvider=name)
    d = ecs.describe_capacity_providers(capacityProviders=[name])["capacityProviders"][0]
    assert d["status"] == "ACTIVE"

    ecs.put_cluster_capacity_providers(cluster=cluster, capacityProviders=[],
                                       defaultCapacityProviderStrategy=[])
    out = ecs.delete_capacity_provider(capacityProvider=arn(f"capacity-provider/{name}"))
    assert out["capacityProvider"]["name"] == name
    assert out["capacityProvider"]["status"] == "INACTIVE"
    names = [p["name"] for p in ecs.describe_capacity_providers()["capacityProviders"]]
    assert name not in names


def test_delete_builtin_capacity_provider_refused(ecs):
    with raises_code("ClientException", "InvalidParameterException"):
        ecs.delete_capacity_provider(capacityProvider="FARGATE")


def test_cluster_can_use_custom_provider(ecs):
    name = unique("cp")
    _create(ecs, name)
    cluster = unique("c")
    c = ecs.create_cluster(clusterName=cluster, capacityProviders=[name, "FARGATE"])["cluster"]
    assert sorted(c["capacityProviders"]) == sorted([name, "FARGATE"])


def test_capacity_provider_tags(ecs):
    name = unique("cp")
    p = _create(ecs, name, tags=[{"key": "owner", "value": "me"}])
    parn = p["capacityProviderArn"]
    d = ecs.describe_capacity_providers(capacityProviders=[name], include=["TAGS"])
    assert d["capacityProviders"][0]["tags"] == [{"key": "owner", "value": "me"}]
    ecs.tag_resource(resourceArn=parn, tags=[{"key": "cost", "value": "42"}])
    tags = ecs.list_tags_for_resource(resourceArn=parn)["tags"]
    assert sorted(tags, key=lambda t: t["key"]) == [{"key": "cost", "value": "42"},
                                                   {"key": "owner", "value": "me"}]
    ecs.untag_resource(resourceArn=parn, tagKeys=["owner"])
    assert ecs.list_tags_for_resource(resourceArn=parn)["tags"] == [{"key": "cost", "value": "42"}]
