#!/usr/bin/env python3
"""Compatibility suite: the official tencentcloud-sdk-python and tccli against
`fleetcrypt emulator`, unchanged but for the endpoint. Usage: compat.py FLEETCRYPT_BIN

Checks, each against the emulator's own ground truth:
  1. SDK: Describe -> Open -> Describe shows YES; DescribeDBFeatures, DescribeDBInstances
     paging, kms DescribeKey all parse into the SDK's models.
  2. A wrong secret key is rejected with AuthFailure.SignatureFailure.
  3. tccli with --endpoint http://127.0.0.1:PORT (it sends the scheme in Host) works.
  4. A burst of 100 concurrent Describe calls gets at most 20 accepted in any sliding second.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.request

from tencentcloud.cdb.v20170320 import cdb_client, models
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client
from tencentcloud.kms.v20190118 import models as kms_models

SID = "AKIDcompat0123456789"
SKEY = "compat-secret-key"
REGION = "ap-guangzhou"

passed = 0
failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def start_emulator(binary):
    proc = subprocess.Popen(
        [binary, "emulator", "--listen", "127.0.0.1:0", "--generate", "30", "--regions", REGION,
         "--secret-id", SID, "--secret-key", SKEY, "--instant", "--seed", "1",
         "--share-encrypted", "0", "--share-unsupported", "0", "--share-needs-upgrade", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on http://(127\.0\.0\.1:\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


def truth(addr):
    with urllib.request.urlopen(f"http://{addr}/__emulator/state") as r:
        return json.load(r)


def profile(addr):
    hp = HttpProfile(protocol="http", endpoint=addr, reqTimeout=10)
    return ClientProfile(httpProfile=hp, language="en-US")


def main():
    binary = os.path.abspath(sys.argv[1])
    for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        os.environ.pop(k, None)
    proc, addr = start_emulator(binary)
    try:
        run(addr, binary)
    finally:
        proc.kill()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def run(addr, binary):
    state = truth(addr)
    ids = sorted(state["instances"])
    iid, iid_cli = ids[0], ids[1]
    cred = credential.Credential(SID, SKEY)
    cdb = cdb_client.CdbClient(cred, REGION, profile(addr))

    # 1. Describe -> Open -> Describe.
    req = models.DescribeDBInstanceInfoRequest()
    req.InstanceId = iid
    before = cdb.DescribeDBInstanceInfo(req)
    check("sdk DescribeDBInstanceInfo says NO first", before.Encryption == "NO", before.to_json_string())
    check("sdk response carries a RequestId", bool(before.RequestId))
    open_req = models.OpenDBInstanceEncryptionRequest()
    open_req.InstanceId = iid
    opened = cdb.OpenDBInstanceEncryption(open_req)
    check("sdk OpenDBInstanceEncryption answered", bool(opened.RequestId))
    after = cdb.DescribeDBInstanceInfo(req)
    check("sdk DescribeDBInstanceInfo says YES after Open", after.Encryption == "YES", after.to_json_string())
    t = truth(addr)["instances"][iid]
    check("ground truth: encrypted after one Open", t["encrypted"] and t["open_calls"] == 1, str(t))

    freq = models.DescribeDBFeaturesRequest()
    freq.InstanceId = iid
    feats = cdb.DescribeDBFeatures(freq)
    check("sdk DescribeDBFeatures parses", feats.IsSupportEncryption is True and feats.EncryptionNeedUpgrade is False,
          feats.to_json_string())

    listed = []
    offset = 0
    while True:
        lreq = models.DescribeDBInstancesRequest()
        lreq.Offset = offset
        lreq.Limit = 7
        page = cdb.DescribeDBInstances(lreq)
        listed += [i.InstanceId for i in page.Items]
        offset += len(page.Items)
        if not page.Items or offset >= page.TotalCount:
            break
    check("sdk DescribeDBInstances pages through every instance", sorted(listed) == ids, f"{len(listed)} vs {len(ids)}")

    common = CommonClient("cdb", "2017-03-20", cred, REGION, profile(addr))
    resp = common.call_json("DescribeDBInstanceInfo", {"InstanceId": iid})
    check("sdk CommonClient.call_json works", resp["Response"]["Encryption"] == "YES", str(resp))

    kms = kms_client.KmsClient(cred, REGION, profile(addr))
    kreq = kms_models.DescribeKeyRequest()
    kreq.KeyId = "no-such-key"
    try:
        kms.DescribeKey(kreq)
        check("kms DescribeKey of an unknown key is an error", False)
    except TencentCloudSDKException as e:
        check("kms DescribeKey of an unknown key is an error", e.get_code() == "ResourceUnavailable.CmkNotFound", str(e))

    # 2. A wrong key.
    bad = cdb_client.CdbClient(credential.Credential(SID, "not-the-key"), REGION, profile(addr))
    try:
        bad.DescribeDBInstanceInfo(req)
        check("wrong secret key rejected", False)
    except TencentCloudSDKException as e:
        check("wrong secret key rejected", e.get_code() == "AuthFailure.SignatureFailure", str(e))
    check("ground truth counts the signature failure", truth(addr)["signature_failures"] >= 1)

    # 3. tccli, with the scheme in the endpoint (Host becomes "http://127.0.0.1:PORT").
    home = tempfile.mkdtemp()
    tccli = os.path.join(os.path.dirname(sys.executable), "tccli")
    out = subprocess.run(
        [tccli, "cdb", "DescribeDBInstanceInfo", "--InstanceId", iid_cli, "--endpoint", f"http://{addr}",
         "--region", REGION, "--secretId", SID, "--secretKey", SKEY],
        capture_output=True, text=True, env={**os.environ, "HOME": home}, timeout=60)
    ok = out.returncode == 0
    try:
        ok = ok and json.loads(out.stdout)["Encryption"] == "NO"
    except ValueError:
        ok = False
    check("tccli --endpoint http://127.0.0.1:PORT works", ok, out.stdout + out.stderr)
    out = subprocess.run(
        [tccli, "cdb", "DescribeDBInstanceInfo", "--InstanceId", iid_cli, "--endpoint", f"http://{addr}",
         "--region", REGION, "--secretId", SID, "--secretKey", "wrong"],
        capture_output=True, text=True, env={**os.environ, "HOME": home}, timeout=60)
    check("tccli with a wrong key fails with AuthFailure", out.returncode != 0 and "AuthFailure" in out.stdout + out.stderr,
          out.stdout + out.stderr)

    # fleetcrypt's own client against the same server.
    out = subprocess.run(
        [binary, "--endpoint", f"http://{addr}", "call", "cdb", "DescribeDBInstanceInfo",
         json.dumps({"InstanceId": iid}), "--region", REGION],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOME": home, "TENCENTCLOUD_SECRET_ID": SID, "TENCENTCLOUD_SECRET_KEY": SKEY})
    check("fleetcrypt call reads the SDK's change", out.returncode == 0 and json.loads(out.stdout)["Encryption"] == "YES",
          out.stdout + out.stderr)

    # 4. A burst of 100 concurrent reads.
    before = truth(addr)["actions"].get("DescribeDBFeatures", {"accepted": 0, "throttled": 0})
    results = []

    def one():
        try:
            cdb.DescribeDBFeatures(freq)
            results.append("ok")
        except TencentCloudSDKException as e:
            results.append(e.get_code())

    threads = [threading.Thread(target=one) for _ in range(100)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    accepted = results.count("ok")
    throttled = results.count("RequestLimitExceeded")
    after = truth(addr)["actions"]["DescribeDBFeatures"]
    check("burst: every call answered ok or RequestLimitExceeded", accepted + throttled == 100, str(results[:5]))
    check("burst: at most 20 accepted", 0 < accepted <= 20, f"accepted {accepted}")
    check("burst: ground truth agrees", after["accepted"] - before["accepted"] == accepted
          and after["throttled"] - before["throttled"] == throttled, str(after))


if __name__ == "__main__":
    main()
