/// @brief RFC 9457 problem details (application/problem+json): every error the REST API returns.
#pragma once

#include <string>
#include <vector>

#include "helm/http/message.hpp"

namespace helm::http {

struct FieldError {
  std::string field;    ///< JSON Pointer or parameter name of the bad input
  std::string message;  ///< what is wrong with it, and how to fix it
};

/// `type` is a short slug ("validation-failed"), emitted as "urn:helm:problem:<slug>".
Response problem(int status, std::string_view type, std::string_view title, std::string_view detail,
                 const std::vector<FieldError>& errors = {});

/// The standard problems, so every route says the same thing for the same failure.
Response not_found(std::string_view detail = "No such resource.");
Response method_not_allowed(const std::vector<std::string>& allowed);
Response payload_too_large(uint64_t limit);
Response bad_request(std::string_view detail, const std::vector<FieldError>& errors = {});
Response database_unavailable();
Response internal_error();

}  // namespace helm::http
