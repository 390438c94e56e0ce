#include "vmms/request_peer.h"

#include <utility>

namespace vmms {
namespace {

thread_local std::string current_peer;

}  // namespace

ScopedRequestPeer::ScopedRequestPeer(std::string peer)
    : previous_(std::exchange(current_peer, std::move(peer))) {}

ScopedRequestPeer::~ScopedRequestPeer() { current_peer = std::move(previous_); }

const std::string& CurrentRequestPeer() { return current_peer; }

}  // namespace vmms
