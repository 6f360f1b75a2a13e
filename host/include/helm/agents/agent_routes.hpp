/// @brief REST routes of agents: enrollment keys, the agents' enrollment endpoint, devices and
/// their commands (the durable outbox), all served through one AgentService.
#pragma once

#include "helm/api/api.hpp"

namespace helm::agents {

class AgentService;

/// Registers the agent routes and their OpenAPI summaries. `agents` must outlive the router.
void add_agent_routes(http::Router& router, api::Services& services, AgentService& agents);

}  // namespace helm::agents
