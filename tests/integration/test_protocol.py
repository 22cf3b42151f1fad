"""The AWS JSON 1.1 wire protocol and SigV4 authentication, exercised with raw
signed requests (botocore's SigV4Auth + requests), plus regions, account ids and STS."""
import datetime

import pytest
import requests

from ecs_helpers import raises_code, unique


def _assert_json_error(r, status, code):
    assert r.status == status, r
    assert r.error_type == code, r
    assert isinstance(r.message, str), r
    assert r.headers.get("x-amzn-RequestId"), f"missing x-amzn-RequestId on {r}"


def test_raw_signed_request_works(server):
    r = server.raw("ListClusters", {})
    assert r.status == 200, r
    assert r.json == {"clusterArns": []}
    assert r.headers["Content-Type"].startswith("application/x-amz-json-1.1")
    assert r.headers.get("x-amzn-RequestId")


def test_empty_body_means_no_input(server):
    r = server.raw("ListClusters", data=b"")
    assert r.status == 200, r


def test_request_ids_are_unique(server):
    ids = {server.raw("ListClusters", {}).headers["x-amzn-RequestId"] for _ in range(5)}
    assert len(ids) == 5


def test_boto_sees_request_id(ecs):
    md = ecs.list_clusters()["ResponseMetadata"]
    assert md["RequestId"]
    assert md["HTTPStatusCode"] == 200


@pytest.mark.parametrize("body", [b"{", b"{\"clusterName\": }", b"not json", b"\xff\xfe{}",
                                  b"{\"a\":1}garbage"])
def test_malformed_json(server, body):
    _assert_json_error(server.raw("CreateCluster", body), 400, "SerializationException")
    assert server.healthy()


def test_non_object_json(server):
    _assert_json_error(server.raw("ListClusters", b"[1,2]"), 400, "SerializationException")
    _assert_json_error(server.raw("ListClusters", b"\"str\""), 400, "SerializationException")


@pytest.mark.parametrize("op,body", [
    ("RunTask", {"taskDefinition": "x:1", "count": "3"}),
    ("CreateCluster", {"clusterName": 12}),
    ("DescribeClusters", {"clusters": "default"}),
    ("CreateCluster", {"clusterName": "x", "tags": {"key": "a"}}),
    ("ListTasks", {"maxResults": 1.5}),
    ("DeregisterContainerInstance", {"containerInstance": "x", "force": "yes"}),
])
def test_wrong_json_type(server, op, body):
    server.raw_ok("CreateCluster", {})
    _assert_json_error(server.raw(op, body), 400, "SerializationException")


def test_enum_violation(server):
    server.raw_ok("CreateCluster", {})
    r = server.raw("RunTask", {"taskDefinition": "x:1", "launchType": "BOAT"})
    _assert_json_error(r, 400, "InvalidParameterException")
    r = server.raw("ListTasks", {"desiredStatus": "SLEEPING"})
    _assert_json_error(r, 400, "InvalidParameterException")


def test_missing_required_member(server):
    r = server.raw("RunTask", {})
    assert r.status == 400, r
    assert r.error_type in ("InvalidParameterException", "ClientException"), r


def test_unknown_member_is_ignored(server):
    r = server.raw("CreateCluster", {"clusterName": "fwd-compat", "someFutureField": {"x": 1}})
    assert r.status == 200, r
    assert r.json["cluster"]["clusterName"] == "fwd-compat"


@pytest.mark.parametrize("target", [
    "AmazonEC2ContainerServiceV20141113.FlyToTheMoon",
    "AmazonEC2ContainerServiceV20141113.",
    "SomeOtherServiceV1.ListClusters",
    "garbage",
])
def test_unknown_operation(server, target):
    r = server.raw("ListClusters", {}, target=target)
    _assert_json_error(r, 400, "UnknownOperationException")


def test_missing_authorization(server):
    r = server.raw("ListClusters", {}, sign=False)
    _assert_json_error(r, 403, "MissingAuthenticationTokenException")


def test_unknown_access_key(server):
    r = server.raw("ListClusters", {}, access_key="AKIAUNKNOWNKEY000000")
    assert r.status in (400, 403), r
    assert r.error_type == "UnrecognizedClientException", r


def test_wrong_secret(server):
    r = server.raw("ListClusters", {}, secret_key="x" * 40)
    assert r.status in (400, 403), r
    assert r.error_type == "InvalidSignatureException", r


def test_tampered_signature(server):
    r = server.raw("ListClusters", {}, tamper=True)
    assert r.status in (400, 403), r
    assert r.error_type == "InvalidSignatureException", r
    assert r.message.startswith("The request signature we calculated does not match"), r


def test_body_changed_after_signing(server):
    # Sign one body, send another: the payload hash no longer matches.
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    ak, sk = server.credentials()
    req = botocore.awsrequest.AWSRequest(
        method="POST", url=server.endpoint + "/", data=b'{"clusterName":"a"}',
        headers={"Content-Type": "application/x-amz-json-1.1",
                 "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.CreateCluster"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(ak, sk), "ecs",
                            "us-east-1").add_auth(req)
    p = req.prepare()
    resp = requests.post(p.url, data=b'{"clusterName":"b"}', headers=dict(p.headers))
    assert resp.status_code in (400, 403)
    assert resp.json()["__type"] == "InvalidSignatureException"


def test_expired_signature(server):
    past = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)
    r = server.raw("ListClusters", {}, signing_time=past)
    assert r.status in (400, 403), r
    assert r.error_type == "InvalidSignatureException", r
    assert "Signature expired" in r.message, r


def test_signature_from_the_future(server):
    future = datetime.datetime.utcnow() + datetime.timedelta(minutes=20)
    r = server.raw("ListClusters", {}, signing_time=future)
    assert r.status in (400, 403), r
    assert r.error_type == "InvalidSignatureException", r


def test_small_clock_skew_is_accepted(server):
    skewed = datetime.datetime.utcnow() - datetime.timedelta(minutes=4)
    assert server.raw("ListClusters", {}, signing_time=skewed).status == 200


def test_wrong_signing_service(server):
    r = server.raw("ListClusters", {}, service="s3")
    assert r.status in (400, 403), r
    assert r.error_type == "InvalidSignatureException", r


def test_oversized_body(server):
    big = {"clusterName": "big", "tags": [{"key": f"k{i}", "value": "v" * 250}
                                          for i in range(300)]}
    r = server.raw("CreateCluster", big)
    assert 400 <= r.status < 500, r
    assert r.error_type, f"expected a JSON __type error body, got {r}"
    assert r.headers.get("x-amzn-RequestId")
    assert server.healthy()
    assert server.raw("ListClusters", {}).status == 200
    # Nothing was created.
    assert server.raw_ok("ListClusters", {})["clusterArns"] == []


def test_oversized_body_without_content_length(server):
    def gen():
        yield b'{"clusterName":"x","junk":"'
        for _ in range(200):
            yield b"a" * 1024
        yield b'"}'
    resp = requests.post(server.endpoint + "/", data=gen(), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.CreateCluster"}, timeout=30)
    assert 400 <= resp.status_code < 500
    assert server.healthy()


def test_body_just_under_the_cap_is_fine(server):
    filler = "x" * (60 * 1024)
    r = server.raw("ListClusters", data=b'{"maxResults": 5, "pad": "' + filler.encode() + b'"}')
    assert r.status == 200, r


def test_healthz_needs_no_auth(server):
    r = requests.get(server.endpoint + "/healthz", timeout=5)
    assert r.status_code == 200


def test_wrong_path_and_method(server):
    r = requests.get(server.endpoint + "/", timeout=5)
    assert 400 <= r.status_code < 500
    r = requests.post(server.endpoint + "/nope", data=b"{}", timeout=5)
    assert 400 <= r.status_code < 500
    assert server.healthy()


def test_regions_are_separate_namespaces(server):
    east = server.client("ecs", region="us-east-1")
    west = server.client("ecs", region="eu-west-1")
    name = unique("reg")
    e = east.create_cluster(clusterName=name)["cluster"]
    assert e["clusterArn"] == f"arn:aws:ecs:us-east-1:000000000000:cluster/{name}"
    assert west.list_clusters()["clusterArns"] == []
    d = west.describe_clusters(clusters=[name])
    assert d["clusters"] == [] and d["failures"][0]["reason"] == "MISSING"
    w = west.create_cluster(clusterName=name)["cluster"]
    assert w["clusterArn"] == f"arn:aws:ecs:eu-west-1:000000000000:cluster/{name}"
    td = west.register_task_definition(family="regfam", containerDefinitions=[
        {"name": "a", "image": "busybox", "memory": 64}])["taskDefinition"]
    assert td["taskDefinitionArn"] == "arn:aws:ecs:eu-west-1:000000000000:task-definition/regfam:1"
    assert east.list_task_definitions()["taskDefinitionArns"] == []
    # A us-east-1 ARN used from eu-west-1 does not resolve.
    with raises_code("ClusterNotFoundException"):
        west.list_tasks(cluster=e["clusterArn"])


def test_region_through_cli(server):
    server.aws("create-cluster", "--cluster-name", "cli-west", region="eu-west-1")
    assert server.aws("list-clusters", region="eu-west-1")["clusterArns"] == [
        "arn:aws:ecs:eu-west-1:000000000000:cluster/cli-west"]
    assert server.aws("list-clusters", region="us-east-1")["clusterArns"] == []


def test_account_id_in_arns(server_factory):
    s = server_factory("acct", account_id="123456789012").start()
    ecs = s.client()
    c = ecs.create_cluster(clusterName="acct")["cluster"]
    assert c["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/acct"
    td = ecs.register_task_definition(family="f", containerDefinitions=[
        {"name": "a", "image": "busybox", "memory": 64}])["taskDefinition"]
    assert td["taskDefinitionArn"] == "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1"
    out = s.aws("get-caller-identity", service="sts")
    assert out["Account"] == "123456789012"
    assert out["Arn"] == "arn:aws:iam::123456789012:root"


def test_account_id_mismatch_on_existing_data_dir(server_factory):
    s = server_factory("acct2", account_id="123456789012").start()
    s.stop()
    s.account_id = "210987654321"
    with pytest.raises(Exception) as ei:
        s.start(timeout=10)
    assert "account" in str(ei.value).lower()


@pytest.mark.parametrize("bad", ["12345", "abcdefghijkl", "1234567890123"])
def test_invalid_account_id_is_refused(server_factory, bad):
    s = server_factory("badacct", account_id=bad)
    with pytest.raises(Exception) as ei:
        s.start(timeout=10)
    assert "account-id" in str(ei.value)


def test_sts_get_caller_identity(server):
    out = server.aws("get-caller-identity", service="sts")
    assert out["Account"] == "000000000000"
    assert out["Arn"] == "arn:aws:iam::000000000000:root"
    assert out["UserId"]
    sts = server.client("sts")
    assert sts.get_caller_identity()["Account"] == "000000000000"


def test_sts_unsigned_is_refused(server):
    r = requests.post(server.endpoint + "/", data="Action=GetCallerIdentity&Version=2011-06-15",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    assert r.status_code == 403
    assert "MissingAuthenticationToken" in r.text or "AccessDenied" in r.text


def test_error_shape_seen_by_boto(ecs):
    with raises_code("ClusterNotFoundException") as e:
        ecs.list_tasks(cluster="nope-nope")
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.error["Message"]
    assert e.response["ResponseMetadata"]["RequestId"]


def test_cli_error_output(server):
    err = server.aws_fail("list-tasks", "--cluster", "nope-nope")
    assert "ClusterNotFoundException" in err


def test_concurrent_clients(server):
    import concurrent.futures
    def work(i):
        c = server.client()
        name = f"conc-{i}"
        c.create_cluster(clusterName=name)
        return c.describe_clusters(clusters=[name])["clusters"][0]["clusterName"]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        got = list(ex.map(work, range(32)))
    assert got == [f"conc-{i}" for i in range(32)]
    assert len(server.client().list_clusters()["clusterArns"]) == 32


NULL_MEMBERS = [
    ("DeleteTaskDefinitions", {"taskDefinitions": [None]}),
    ("DescribeCapacityProviders", {"capacityProviders": [None]}),
    ("PutClusterCapacityProviders", {"cluster": "default", "capacityProviders": [None],
                                     "defaultCapacityProviderStrategy": []}),
    ("DescribeClusters", {"clusters": [None]}),
    ("DescribeTasks", {"cluster": "default", "tasks": [None]}),
    ("DescribeContainerInstances", {"cluster": "default", "containerInstances": [None]}),
    ("UntagResource", {"resourceArn": "arn:aws:ecs:us-east-1:000000000000:cluster/default",
                       "tagKeys": [None]}),
    ("CreateCluster", {"clusterName": "x", "tags": [None]}),
    ("CreateCluster", {"clusterName": "y", "settings": [None]}),
    ("RegisterTaskDefinition", {"family": "f", "containerDefinitions": [None]}),
    ("RegisterTaskDefinition", {"family": "f", "containerDefinitions": [
        {"name": "a", "image": "b", "memory": 64, "command": [None], "portMappings": [None],
         "environment": [None]}]}),
    ("StartTask", {"cluster": "default", "taskDefinition": "f:1", "containerInstances": [None]}),
    ("GetTaskProtection", {"cluster": "default", "tasks": [None]}),
    ("ListAccountSettings", {"name": None}),
    ("PutAttributes", {"cluster": "default", "attributes": [None]}),
    ("DeleteAttributes", {"cluster": "default", "attributes": [None]}),
]


@pytest.mark.parametrize("op,body", NULL_MEMBERS, ids=[f"{o}-{i}" for i, (o, _) in
                                                        enumerate(NULL_MEMBERS)])
def test_json_null_members_never_crash(server, op, body):
    """botocore never sends null, but other clients may: the answer is a 200 or a 4xx
    JSON error, never a dropped connection."""
    server.raw_ok("CreateCluster", {})
    server.raw_ok("RegisterTaskDefinition", {"family": "f", "containerDefinitions": [
        {"name": "a", "image": "b", "memory": 64}]})
    try:
        r = server.raw(op, body)
    except requests.RequestException as e:
        pytest.fail(f"{op} {body}: connection dropped ({e}); server alive={server.alive()}")
    assert r.status == 200 or (400 <= r.status < 500 and r.error_type), r
    assert server.healthy()
