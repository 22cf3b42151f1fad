"""TagResource / UntagResource / ListTagsForResource on every taggable resource, and
account settings."""
import pytest

from ecs_helpers import (arn, raises_code, register_instance, register_simple_taskdef, unique)


def _by_key(tags):
    return sorted(tags, key=lambda t: t["key"])


@pytest.fixture
def resources(ecs):
    """One of each taggable resource: name -> ARN."""
    cluster = unique("tag")
    carn = ecs.create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
    ci = register_instance(ecs, cluster)["containerInstanceArn"]
    td = register_simple_taskdef(ecs)
    task = ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"])["tasks"][0]
    return {"cluster": carn, "container-instance": ci, "task-definition": td["taskDefinitionArn"],
            "task": task["taskArn"]}


KINDS = ["cluster", "container-instance", "task-definition", "task"]


@pytest.mark.parametrize("kind", KINDS)
def test_tag_untag_list(ecs, resources, kind):
    r = resources[kind]
    assert ecs.list_tags_for_resource(resourceArn=r)["tags"] == []
    ecs.tag_resource(resourceArn=r, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    assert _by_key(ecs.list_tags_for_resource(resourceArn=r)["tags"]) == [
        {"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    # Same key again replaces the value.
    ecs.tag_resource(resourceArn=r, tags=[{"key": "a", "value": "one"}])
    assert _by_key(ecs.list_tags_for_resource(resourceArn=r)["tags"]) == [
        {"key": "a", "value": "one"}, {"key": "b", "value": "2"}]
    ecs.untag_resource(resourceArn=r, tagKeys=["a", "not-there"])
    assert ecs.list_tags_for_resource(resourceArn=r)["tags"] == [{"key": "b", "value": "2"}]


@pytest.mark.parametrize("kind", KINDS)
def test_too_many_tags(ecs, resources, kind):
    r = resources[kind]
    with raises_code("InvalidParameterException"):
        ecs.tag_resource(resourceArn=r, tags=[{"key": f"k{i}", "value": "v"} for i in range(51)])
    ecs.tag_resource(resourceArn=r, tags=[{"key": f"k{i}", "value": "v"} for i in range(50)])
    # 50 is the limit in total, not per call.
    with raises_code("InvalidParameterException"):
        ecs.tag_resource(resourceArn=r, tags=[{"key": "one-more", "value": "v"}])
    assert len(ecs.list_tags_for_resource(resourceArn=r)["tags"]) == 50


@pytest.mark.parametrize("key", ["aws:reserved", "AWS:Reserved", "aws:"])
def test_aws_prefix_is_reserved(ecs, resources, key):
    with raises_code("InvalidParameterException"):
        ecs.tag_resource(resourceArn=resources["cluster"], tags=[{"key": key, "value": "x"}])


def test_tag_key_and_value_lengths(ecs, resources):
    r = resources["cluster"]
    ecs.tag_resource(resourceArn=r, tags=[{"key": "k" * 128, "value": "v" * 256}])
    with raises_code("InvalidParameterException"):
        ecs.tag_resource(resourceArn=r, tags=[{"key": "k" * 129, "value": "v"}])
    with raises_code("InvalidParameterException"):
        ecs.tag_resource(resourceArn=r, tags=[{"key": "k", "value": "v" * 257}])


def test_create_cluster_with_too_many_tags(ecs):
    with raises_code("InvalidParameterException"):
        ecs.create_cluster(clusterName=unique("c"),
                           tags=[{"key": f"k{i}", "value": "v"} for i in range(51)])


def test_tags_on_missing_resources(ecs):
    with raises_code("ClusterNotFoundException", "ResourceNotFoundException",
                     "InvalidParameterException"):
        ecs.tag_resource(resourceArn=arn(f"cluster/{unique('gone')}"),
                         tags=[{"key": "a", "value": "b"}])
    with raises_code("ClientException", "ResourceNotFoundException",
                     "InvalidParameterException"):
        ecs.list_tags_for_resource(resourceArn=arn("task-definition/no-such-family:1"))
    with raises_code("InvalidParameterException"):
        ecs.list_tags_for_resource(resourceArn="not-an-arn")


def test_tags_through_cli(server, resources):
    r = resources["cluster"]
    server.aws("tag-resource", "--resource-arn", r, "--tags", "key=team,value=blue")
    out = server.aws("list-tags-for-resource", "--resource-arn", r)
    assert out["tags"] == [{"key": "team", "value": "blue"}]
    server.aws("untag-resource", "--resource-arn", r, "--tag-keys", "team")
    assert server.aws("list-tags-for-resource", "--resource-arn", r)["tags"] == []


# --- account settings ------------------------------------------------------------------

ROOT = "arn:aws:iam::000000000000:root"


def _settings(ecs, **kw):
    out, token = [], None
    while True:
        args = dict(kw)
        if token:
            args["nextToken"] = token
        page = ecs.list_account_settings(**args)
        out += page["settings"]
        token = page.get("nextToken")
        if not token:
            return out


def test_put_and_list_account_setting(ecs):
    s = ecs.put_account_setting(name="containerInsights", value="enabled")["setting"]
    assert s["name"] == "containerInsights" and s["value"] == "enabled"
    assert s["principalArn"] == ROOT
    got = _settings(ecs, name="containerInsights")
    assert [(x["name"], x["value"]) for x in got] == [("containerInsights", "enabled")]
    # Without effectiveSettings only explicitly set values are listed.
    names = {x["name"] for x in _settings(ecs)}
    assert names == {"containerInsights"}


def test_list_effective_settings(ecs):
    eff = {x["name"]: x["value"] for x in _settings(ecs, effectiveSettings=True)}
    for name in ("serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat",
                 "awsvpcTrunking", "containerInsights"):
        assert name in eff, (name, eff)
    assert eff["taskLongArnFormat"] == "enabled"
    assert eff["containerInsights"] == "disabled"
    ecs.put_account_setting(name="containerInsights", value="enabled")
    eff = {x["name"]: x["value"] for x in _settings(ecs, effectiveSettings=True)}
    assert eff["containerInsights"] == "enabled"


def test_list_account_settings_value_filter(ecs):
    ecs.put_account_setting(name="containerInsights", value="enabled")
    ecs.put_account_setting(name="awsvpcTrunking", value="enabled")
    got = _settings(ecs, value="enabled")
    assert sorted(x["name"] for x in got) == ["awsvpcTrunking", "containerInsights"]


def test_account_setting_default(ecs):
    s = ecs.put_account_setting_default(name="awsvpcTrunking", value="enabled")["setting"]
    assert (s["name"], s["value"]) == ("awsvpcTrunking", "enabled")
    eff = {x["name"]: x["value"] for x in _settings(ecs, effectiveSettings=True)}
    assert eff["awsvpcTrunking"] == "enabled"
    # The principal's own setting overrides the account default.
    ecs.put_account_setting(name="awsvpcTrunking", value="disabled")
    eff = {x["name"]: x["value"] for x in _settings(ecs, effectiveSettings=True)}
    assert eff["awsvpcTrunking"] == "disabled"


def test_account_default_container_insights_applies_to_new_clusters(ecs):
    ecs.put_account_setting_default(name="containerInsights", value="enabled")
    name = unique("ci")
    c = ecs.create_cluster(clusterName=name)["cluster"]
    settings = c.get("settings") or ecs.describe_clusters(
        clusters=[name], include=["SETTINGS"])["clusters"][0]["settings"]
    assert {"name": "containerInsights", "value": "enabled"} in settings


def test_delete_account_setting(ecs):
    ecs.put_account_setting(name="containerInsights", value="enabled")
    out = ecs.delete_account_setting(name="containerInsights")["setting"]
    assert out["name"] == "containerInsights"
    assert _settings(ecs, name="containerInsights") == [] or \
        all(x["value"] == "disabled" for x in _settings(ecs, name="containerInsights"))
    eff = {x["name"]: x["value"] for x in _settings(ecs, effectiveSettings=True)}
    assert eff["containerInsights"] == "disabled"


@pytest.mark.parametrize("name,value", [
    ("notASetting", "enabled"),
    ("containerInsights", "sometimes"),
    ("taskLongArnFormat", "yes"),
    ("fargateTaskRetirementWaitPeriod", "3"),
])
def test_account_setting_invalid(ecs, name, value):
    with raises_code("InvalidParameterException"):
        ecs.put_account_setting(name=name, value=value)
    with raises_code("InvalidParameterException"):
        ecs.put_account_setting_default(name=name, value=value)


def test_delete_account_setting_invalid_name(ecs):
    with raises_code("InvalidParameterException"):
        ecs.delete_account_setting(name="notASetting")


def test_account_settings_through_cli(server):
    out = server.aws("put-account-setting", "--name", "containerInsights", "--value", "enhanced")
    assert out["setting"]["value"] == "enhanced"
    out = server.aws("list-account-settings", "--name", "containerInsights")
    assert out["settings"][0]["value"] == "enhanced"
    out = server.aws("list-account-settings", "--effective-settings")
    assert {"taskLongArnFormat", "containerInsights"} <= {s["name"] for s in out["settings"]}
    server.aws("delete-account-setting", "--name", "containerInsights")
