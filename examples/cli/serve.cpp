// vlmamba serve: an OpenAI-compatible HTTP server (cpp-httplib) over the library's serving engine
// (vlmamba/serve/): chat completions with images, streamed or not, continuous batching, a prefix-state cache,
// /v1/models, /health, Prometheus /metrics and a chat page at /.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <limits>
#include <random>

#include "commands.hpp"
#include "options.hpp"
#include "serve_page.hpp"  // kChatPage, generated from serve_page.html
#include "vlmamba/serve/engine.hpp"

// After Eigen: <resolv.h>, which httplib includes, defines a macro `_res` that Eigen's headers use as a name.
#include <httplib.h>

namespace cli {
namespace {

namespace sv = vlmamba::serve;

struct ServeOpts {
    ModelFlags model;
    std::string host = "127.0.0.1", alias, api_key, allow_image_dir, max_body = "32M";
    int port = 8080, parallel = 4, max_tokens_cap = 4096, max_images = 8, threads_http = 0;
    std::size_t queue = 64, cache_mb = 256;
    std::int64_t max_prompt_tokens = 16384;
    sv::SamplingDefaults sampling;
};

httplib::Server* g_server = nullptr;

std::size_t parse_size(const std::string& s) {
    std::size_t used = 0;
    double v = 0;
    try {
        v = std::stod(s, &used);
    } catch (const std::exception&) {
        vlmamba::fail("serve", "--max-body: expected a size like 32M, 512K or 1048576, got '", s, "'");
    }
    const std::string unit = s.substr(used);
    const double mult = unit.empty() ? 1 : unit == "K" || unit == "k" ? 1024 : unit == "M" || unit == "m" ? 1 << 20
                                            : unit == "G" || unit == "g" ? double(1 << 30) : -1;
    VLM_CHECK(mult > 0 && v > 0, "serve", "--max-body: expected a size like 32M, 512K or 1048576, got '", s, "'");
    return std::size_t(v * mult);
}

// JSON text; a reply's broken UTF-8 (a model may emit any bytes) becomes U+FFFD instead of an exception.
std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void send_error(httplib::Response& res, const sv::ApiError& e) {
    res.status = e.status;
    res.set_content(sv::error_body(e), "application/json");
}

std::string completion_id() {
    static std::atomic<std::uint64_t> n{0};
    char b[48];
    std::snprintf(b, sizeof b, "chatcmpl-%llx-%llu", static_cast<unsigned long long>(std::time(nullptr)),
                  static_cast<unsigned long long>(++n));
    return b;
}

nlohmann::json usage(const vlmamba::Result& r, const sv::Job& job) {
    return {{"prompt_tokens", r.prompt_tokens},
            {"completion_tokens", r.ids.size()},
            {"total_tokens", r.prompt_tokens + std::int64_t(r.ids.size())},
            {"prompt_tokens_details", {{"cached_tokens", job.cached_positions}, {"image_tokens", r.image_tokens}}}};
}

nlohmann::json timings(const sv::Job& job) {
    return {{"time_to_first_token_ms", job.ttft * 1e3}, {"total_ms", job.total * 1e3}};
}

struct Server {
    const ServeOpts& o;
    const vlmamba::Model& model;
    sv::Engine& engine;
    sv::Limits limits;
    std::time_t created = std::time(nullptr);

    bool authorized(const httplib::Request& req, httplib::Response& res) const {
        if (o.api_key.empty() || req.get_header_value("Authorization") == "Bearer " + o.api_key) return true;
        send_error(res, sv::ApiError(401, "invalid_request_error", "invalid or missing API key (Authorization: "
                                                                    "Bearer KEY)", {}, "invalid_api_key"));
        return false;
    }

    void chat(const httplib::Request& req, httplib::Response& res) {
        if (!authorized(req, res)) return;
        std::shared_ptr<sv::Job> job;
        bool stream = false, include_usage = false;
        try {
            const sv::ChatRequest cr = sv::parse_chat_request(req.body, limits, o.sampling);
            if (!cr.model.empty() && cr.model != o.alias)
                throw sv::ApiError(400, "invalid_request_error",
                                   "the model '" + cr.model + "' does not exist; this server has '" + o.alias + "'",
                                   "model", "model_not_found");
            vlmamba::Request r;
            r.sampling = cr.sampling;
            if (!cr.seeded) r.sampling.seed = std::random_device{}();
            r.max_tokens = cr.max_tokens;
            r.stop = cr.stop;
            job = std::make_shared<sv::Job>(sv::render_prompt(model, cr, limits), std::move(r));
            stream = cr.stream;
            include_usage = cr.include_usage;
        } catch (const sv::ApiError& e) {
            engine.metrics.request_errors++;
            return send_error(res, e);
        } catch (const std::exception& e) {
            engine.metrics.request_errors++;
            return send_error(res, sv::invalid_request(e.what()));
        }
        if (!engine.submit(job)) {
            engine.metrics.request_errors++;
            return send_error(res, sv::ApiError(503, "server_error",
                                                "the queue is full (--queue " + std::to_string(o.queue) +
                                                    "); try again later",
                                                {}, "queue_full"));
        }
        const std::string id = completion_id();
        const std::time_t now = std::time(nullptr);
        if (!stream) {
            try {
                const vlmamba::Result& r = job->wait();
                nlohmann::json body = {
                    {"id", id},
                    {"object", "chat.completion"},
                    {"created", now},
                    {"model", o.alias},
                    {"choices",
                     {{{"index", 0},
                       {"message", {{"role", "assistant"}, {"content", r.text}}},
                       {"finish_reason", r.finish_reason}}}},
                    {"usage", usage(r, *job)},
                    {"timings", timings(*job)}};
                res.set_content(dump(body), "application/json");
            } catch (const sv::ApiError& e) {
                send_error(res, e);
            }
            return;
        }
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [job, id, now, include_usage, alias = o.alias](std::size_t, httplib::DataSink& sink) {
                auto chunk = [&](const nlohmann::json& delta, const nlohmann::json& finish) {
                    const nlohmann::json c = {{"id", id},
                                              {"object", "chat.completion.chunk"},
                                              {"created", now},
                                              {"model", alias},
                                              {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}}}};
                    const std::string line = "data: " + dump(c) + "\n\n";
                    return sink.write(line.data(), line.size());
                };
                bool ok = chunk({{"role", "assistant"}, {"content", ""}}, nullptr);
                std::string piece;
                while (ok && job->next_piece(piece)) ok = chunk({{"content", piece}}, nullptr);
                if (!ok) {
                    job->cancel();  // the client went away: the engine frees the slot at its next step
                    return false;
                }
                std::string tail;
                try {
                    const vlmamba::Result& r = job->wait();
                    chunk(nlohmann::json::object(), r.finish_reason);
                    if (include_usage) {
                        const nlohmann::json u = {{"id", id},        {"object", "chat.completion.chunk"},
                                                  {"created", now},  {"model", alias},
                                                  {"choices", nlohmann::json::array()}, {"usage", usage(r, *job)}};
                        tail = "data: " + dump(u) + "\n\n";
                    }
                } catch (const sv::ApiError& e) {
                    tail = "data: " + sv::error_body(e) + "\n\n";
                }
                tail += "data: [DONE]\n\n";
                sink.write(tail.data(), tail.size());
                sink.done();
                return true;
            });
    }
};

void serve(const ServeOpts& o) {
    const vlmamba::Model model = load_model(o.model);
    sv::Engine engine(model, {o.parallel, o.queue, o.cache_mb << 20});
    Server s{o, model, engine, {}};
    s.limits.max_body = parse_size(o.max_body);
    s.limits.max_images = o.max_images;
    s.limits.max_prompt_tokens = o.max_prompt_tokens;
    s.limits.max_tokens_cap = o.max_tokens_cap;
    s.limits.default_max_tokens = std::min(512, o.max_tokens_cap);
    s.limits.allow_image_dir = o.allow_image_dir;

    httplib::Server http;
    // Every client waiting for a reply holds an HTTP thread: the running and the queued ones, and a few more.
    const std::size_t threads = o.threads_http > 0 ? std::size_t(o.threads_http) : std::size_t(o.parallel) + o.queue + 8;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(s.limits.max_body);
    http.set_tcp_nodelay(true);  // a streamed token goes out at once (Nagle would hold it for the previous ACK)
    http.set_read_timeout(30);
    http.set_write_timeout(30);
    http.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(kChatPage, "text/html"); });
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(R"({"status":"ok"})", "application/json");
    });
    http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
        res.set_content(engine.metrics.prometheus(), "text/plain; version=0.0.4");
    });
    http.Get("/v1/models", [&](const httplib::Request& req, httplib::Response& res) {
        if (!s.authorized(req, res)) return;
        const nlohmann::json body = {
            {"object", "list"},
            {"data", {{{"id", o.alias}, {"object", "model"}, {"created", s.created}, {"owned_by", "vlmamba"},
                       {"variant", model.variant()}}}}};
        res.set_content(dump(body), "application/json");
    });
    http.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) { s.chat(req, res); });
    http.Post("/chat/completions", [&](const httplib::Request& req, httplib::Response& res) { s.chat(req, res); });
    // Errors httplib raises itself (413 over --max-body, 404 for other paths) get OpenAI's error body too.
    http.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
        if (res.status == 413) {
            engine.metrics.request_errors++;
            return send_error(res, sv::ApiError(413, "invalid_request_error",
                                                "the body is over --max-body (" + o.max_body + ")", {},
                                                "body_too_large"));
        }
        if (res.status == 404)
            return send_error(res, sv::ApiError(404, "invalid_request_error", "no route " + req.method + " " + req.path,
                                                {}, "not_found"));
    });

    const int port = o.port == 0 ? http.bind_to_any_port(o.host) : (http.bind_to_port(o.host, o.port) ? o.port : -1);
    VLM_CHECK(port > 0, "serve", "cannot listen on ", o.host, ":", o.port, " (in use, or not an address of this host)");
    std::fprintf(stderr, "vlmamba serve: %s (%s) on http://%s:%d, %d slots, queue %zu, prefix cache %zu MiB\n",
                 o.alias.c_str(), model.variant().c_str(), o.host.c_str(), port, o.parallel, o.queue, o.cache_mb);
    std::fflush(stderr);
    g_server = &http;
    std::signal(SIGINT, [](int) { g_server->stop(); });
    std::signal(SIGTERM, [](int) { g_server->stop(); });
    http.listen_after_bind();
    g_server = nullptr;
    std::fprintf(stderr, "vlmamba serve: stopped after %llu requests\n",
                 static_cast<unsigned long long>(engine.metrics.requests.load()));
}

}  // namespace

void add_serve(CLI::App& app) {
    auto* cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API (with a chat page)");
    cmd->footer(
        "Examples:\n"
        "  vlmamba serve -m zoo/shapes-vlmamba                      then open http://127.0.0.1:8080/\n"
        "  vlmamba serve -m DIR --port 8000 --parallel 8 --cache-mb 1024 --alias my-model\n"
        "  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n"
        "    -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Describe a sunset.\"}],\"temperature\":0}'\n"
        "Endpoints: POST /v1/chat/completions (images as data: URLs in image_url parts; stream: true for\n"
        "server-sent events), GET /v1/models, /health, /metrics (Prometheus) and / (a chat page).\n"
        "Up to --parallel sequences decode together; a new request joins between steps. The state after each\n"
        "request's image prefix, prompt and reply is cached (--cache-mb): a follow-up turn about the same image\n"
        "prefills only its new tokens. Sampling defaults (when a request gives none): --temp, --top-p, --top-k,\n"
        "--min-p. Image URLs are data: URLs; file:// only under --allow-image-dir; http(s) is refused.");
    auto o = std::make_shared<ServeOpts>();
    add_model_flags(cmd, o->model, "model directory (VL-Mamba or Mamba LM)");
    cmd->add_option("--host", o->host, "address to listen on")->capture_default_str();
    cmd->add_option("--port", o->port, "port (0: any free port, printed on stderr)")->capture_default_str()
        ->check(CLI::Range(0, 65535));
    cmd->add_option("--parallel,--np", o->parallel, "sequences that decode together (slots)")->capture_default_str()
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--queue", o->queue, "requests that may wait for a slot; beyond, 503")->capture_default_str();
    cmd->add_option("--cache-mb", o->cache_mb, "prefix-state cache budget in MiB (0: off)")->capture_default_str();
    cmd->add_option("--alias", o->alias, "the model id clients use (default: the directory's name)");
    cmd->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on /v1/*")->envname("VLMAMBA_API_KEY");
    cmd->add_option("--allow-image-dir", o->allow_image_dir, "allow file:// image URLs under this directory")
        ->check(CLI::ExistingDirectory);
    cmd->add_option("--max-tokens-cap", o->max_tokens_cap, "the most tokens a reply may ask for (default 512 each)")
        ->capture_default_str()->check(CLI::Range(1, std::numeric_limits<int>::max()));
    cmd->add_option("--max-body", o->max_body, "largest request body (413 beyond)")->capture_default_str();
    cmd->add_option("--max-images", o->max_images, "images per request")->capture_default_str()
        ->check(CLI::Range(0, std::numeric_limits<int>::max()));
    cmd->add_option("--max-prompt-tokens", o->max_prompt_tokens, "prompt positions per request, images included")
        ->capture_default_str()->check(CLI::Range(1, std::numeric_limits<int>::max()));
    cmd->add_option("--temp,--temperature", o->sampling.temperature, "default temperature (0: greedy)")
        ->capture_default_str();
    cmd->add_option("--top-p", o->sampling.top_p, "default top-p")->capture_default_str();
    cmd->add_option("--top-k", o->sampling.top_k, "default top-k (0: off)")->capture_default_str();
    cmd->add_option("--min-p", o->sampling.min_p, "default min-p (0: off)")->capture_default_str();
    cmd->add_option("--http-threads", o->threads_http, "HTTP threads (default: parallel + queue + 8)");
    cmd->callback([o] {
        if (o->alias.empty()) o->alias = std::filesystem::path(o->model.dir).lexically_normal().filename().string();
        if (o->alias.empty()) o->alias = std::filesystem::path(o->model.dir).parent_path().filename().string();
        serve(*o);
    });
}

}  // namespace cli
