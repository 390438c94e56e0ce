"""Drives a real vmms with Debian's grpcio and stubs generated from our proto.

Creates, starts, lists, stops and deletes a VM running the spin guest, checking the recorded
state at each step; also asks grpc.health.v1 and server reflection. Run by
python_client_test.sh, which generates the stubs and puts them on PYTHONPATH.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import grpc
from hvstack.v1 import vm_pb2
from hvstack.v1 import vm_pb2_grpc

FAILURES = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        FAILURES.append(what)


def state_name(state):
    return vm_pb2.VmState.Name(state)


def health_check(channel):
    # grpc.health.v1.Health/Check with service "": an empty request; the response is
    # HealthCheckResponse{status = 1 (SERVING)}, i.e. the bytes 08 01.
    check_call = channel.unary_unary("/grpc.health.v1.Health/Check")
    return check_call(b"", timeout=5)


def reflection_services(channel):
    # ServerReflectionRequest{list_services = ""} (field 7, length 0). The response's
    # ListServiceResponse holds the service names as strings: look for them in the bytes.
    info = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    return b"".join(info(iter([b"\x3a\x00"]), timeout=5))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vmms", required=True)
    parser.add_argument("--vmwp", required=True)
    parser.add_argument("--kernel", required=True)
    args = parser.parse_args()

    # Short, under /tmp: a unix socket path must fit in 107 bytes.
    state_dir = tempfile.mkdtemp(prefix="hvpy", dir="/tmp")
    log_path = os.path.join(os.environ.get("TEST_TMPDIR", state_dir), "vmms.log")
    socket_path = os.path.join(state_dir, "vmms.sock")
    log = open(log_path, "wb")
    vmms = subprocess.Popen(
        [args.vmms, "--state-dir", state_dir, "--vmwp", args.vmwp],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        channel = grpc.insecure_channel("unix:" + socket_path)
        grpc.channel_ready_future(channel).result(timeout=20)
        stub = vm_pb2_grpc.VmServiceStub(channel)

        check(health_check(channel) == b"\x08\x01", "grpc.health.v1 Check: SERVING")
        services = reflection_services(channel)
        check(b"hvstack.v1.VmService" in services, "reflection lists hvstack.v1.VmService")
        check(b"grpc.health.v1.Health" in services, "reflection lists grpc.health.v1.Health")

        config = vm_pb2.VmConfig(vcpus=1, memory_mib=64, kernel_path=args.kernel)
        vm = stub.CreateVm(vm_pb2.CreateVmRequest(name="py1", config=config), timeout=10)
        check(vm.name == "py1" and len(vm.uuid) == 36, "CreateVm returns the VM with a uuid")
        check(vm.state == vm_pb2.VM_STATE_OFF, "created VM is Off (%s)" % state_name(vm.state))

        try:
            stub.CreateVm(vm_pb2.CreateVmRequest(name="py1", config=config), timeout=10)
            check(False, "second CreateVm of py1 fails")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.ALREADY_EXISTS,
                  "second CreateVm of py1 is ALREADY_EXISTS (%s)" % e.code())

        vm = stub.StartVm(vm_pb2.StartVmRequest(name="py1"), timeout=40)
        check(vm.state == vm_pb2.VM_STATE_RUNNING,
              "StartVm returns Running (%s: %s)" % (state_name(vm.state), vm.state_reason))
        check(vm.worker_pid > 0, "running VM has a worker pid (%d)" % vm.worker_pid)
        check(os.path.exists("/proc/%d" % vm.worker_pid), "the worker process exists")

        listed = {v.name: v for v in stub.ListVms(vm_pb2.ListVmsRequest(), timeout=10).vms}
        check(set(listed) == {"py1"}, "ListVms lists py1 only (%s)" % sorted(listed))
        check("py1" in listed and listed["py1"].state == vm_pb2.VM_STATE_RUNNING,
              "ListVms shows py1 Running")
        got = stub.GetVm(vm_pb2.GetVmRequest(name="py1"), timeout=10)
        check(got.state == vm_pb2.VM_STATE_RUNNING and got.uuid == vm.uuid,
              "GetVm shows py1 Running with the same uuid")

        try:
            stub.DeleteVm(vm_pb2.DeleteVmRequest(name="py1"), timeout=10)
            check(False, "DeleteVm of a running VM fails")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.FAILED_PRECONDITION and "running" in e.details(),
                  "DeleteVm of a running VM is FAILED_PRECONDITION naming the state (%s %s)"
                  % (e.code(), e.details()))

        stopped = stub.StopVm(vm_pb2.StopVmRequest(name="py1"), timeout=20)
        check(stopped.state == vm_pb2.VM_STATE_OFF,
              "StopVm returns Off (%s: %s)" % (state_name(stopped.state), stopped.state_reason))
        check(stopped.worker_pid == 0, "stopped VM has no worker pid")
        listed = {v.name: v for v in stub.ListVms(vm_pb2.ListVmsRequest(), timeout=10).vms}
        check(listed["py1"].state == vm_pb2.VM_STATE_OFF, "ListVms shows py1 Off")
        deadline = time.time() + 5
        while os.path.exists("/proc/%d" % vm.worker_pid) and time.time() < deadline:
            time.sleep(0.01)
        check(not os.path.exists("/proc/%d" % vm.worker_pid), "the worker process is gone")

        stub.DeleteVm(vm_pb2.DeleteVmRequest(name="py1"), timeout=10)
        try:
            stub.GetVm(vm_pb2.GetVmRequest(name="py1"), timeout=10)
            check(False, "GetVm of a deleted VM fails")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND,
                  "GetVm of a deleted VM is NOT_FOUND (%s)" % e.code())
        channel.close()
    finally:
        if vmms.poll() is None:
            vmms.send_signal(signal.SIGTERM)
            try:
                vmms.wait(timeout=15)
            except subprocess.TimeoutExpired:
                vmms.kill()
                vmms.wait()
        log.close()
        shutil.rmtree(state_dir, ignore_errors=True)
    check(vmms.returncode == 0, "vmms exits 0 on SIGTERM (%s)" % vmms.returncode)

    if FAILURES:
        print("vmms log:\n" + open(log_path, errors="replace").read())
        print("%d check(s) failed" % len(FAILURES))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
