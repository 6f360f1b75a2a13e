/// @brief Private: enrollment as a coroutine on the caller's io_context (helm-loadgen enrolls
/// many simulated agents concurrently).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include <variant>

#include "helm/agent/enroll.hpp"

namespace helm::agent::detail {

boost::asio::awaitable<std::variant<AgentState, EnrollFailure>> enroll_async(
    const EnrollRequest& request, boost::asio::ssl::context& ctx);

}  // namespace helm::agent::detail
