"""The per-process service graph: built once at start-up, torn down at shutdown.

``start`` starts the parts in order on an ``AsyncExitStack``, each part's stop pushed before it starts (every stop is
safe on a part that never started or started halfway). When a part fails to start, the stack unwinds at once: the
parts already started stop in reverse order and the engine's connections are released before the error propagates,
so a failed start leaves no task, connection or process behind. ``stop`` unwinds the same stack.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.assistants.service import AssistantService
from backend.auth.authenticator import Authenticator
from backend.auth.oidc import OIDCVerifier, oauth_client
from backend.auth.roles import Roles
from backend.auth.tokens import TokenStore
from backend.auth.users import UserStore
from backend.chat.context_services import ContextServices
from backend.chat.personas import Personas
from backend.chat.sessions import ChatSessions
from backend.chat.store import ChatStore
from backend.chat.tool_approvals import ToolApprovals
from backend.chat.tool_loop import ToolLoop
from backend.chat.turn import ChatTurns
from backend.chat.turn_sql import TurnDatabase
from backend.config import Settings
from backend.configuration.pins import pins_from
from backend.configuration.service import ConfigurationService
from backend.configuration.store import ConfigurationStore
from backend.db.changes import ChangeFeed
from backend.db.engine import asyncpg_dsn, create_engine
from backend.lifecycle.deployers.local import LocalDeployer
from backend.lifecycle.parts import LifecycleServices
from backend.lifecycle.schedules import Scheduler, ScheduleStore
from backend.limits.limiter import Limiter
from backend.limits.store import LimitStore
from backend.mcp.hosted import HostedServers
from backend.mcp.service import McpService
from backend.mcp.store import McpServerStore
from backend.net.egress import EgressGuard
from backend.prompts.service import PromptTemplateService
from backend.rag.chat import ChatRag
from backend.rag.documents import DocumentService
from backend.rag.embedder import Embedder
from backend.rag.ingest import IngestRunner
from backend.rag.jobs import JobService
from backend.rag.pipeline_owner import OwnerLookup
from backend.rag.pipelines import PipelineService
from backend.rag.ranking import PageFusion
from backend.rag.repositories import RepositoryService
from backend.rag.search import Reranker, SearchService
from backend.rag.sources import Sources
from backend.rag.worker import RagWorker
from backend.registry.route_table import RouteTable
from backend.registry.secrets import SecretBox
from backend.registry.service import ModelRegistry
from backend.serve.gateway import Gateway
from backend.serve.internal import GatewayClient
from backend.serve.litellm_backend import LiteLLMBackend
from backend.serve.passthrough import Passthrough
from backend.sessions.store import SessionStore
from backend.usage.meter import UsageMeter
from ingestion.parser_pool import ParserPool


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    feed: ChangeFeed
    tokens: TokenStore
    authenticator: Authenticator
    registry: ModelRegistry
    routes: RouteTable
    meter: UsageMeter
    passthrough: Passthrough
    gateway: Gateway
    limits: LimitStore
    limiter: Limiter
    rag: RagServices
    egress: EgressGuard
    sessions: SessionStore  # browser sign-in sessions (chat sessions are ``chat``)
    configuration: ConfigurationService
    prompts: PromptTemplateService  # the prompt library; ``render`` fills a template for the chat endpoint
    assistants: AssistantService  # assistant stacks; ``resolve`` gives a chat session what it takes from one
    mcp: McpService
    local_models: LocalDeployer  # models run as processes here (backend/lifecycle/deployers/local.py)
    schedules: ScheduleStore
    scheduler: Scheduler  # its ``actions`` are the lifecycle's (None: schedules are stored, not acted on)
    chat_gateway: GatewayClient  # model calls from inside the backend, through the gateway's own path
    chat: ChatSessions
    chat_turns: ChatTurns
    context: ContextServices  # documents in chat context, summaries, images, compaction (backend/chat)
    lifecycle: LifecycleServices  # model workflows (create, update, enable, disable, delete) and health checks
    oauth: Any = None  # authlib's client for the browser sign-in, when OIDC is configured
    _running: AsyncExitStack = field(default_factory=AsyncExitStack, init=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, database_url: str) -> Services:
        engine = create_engine(
            database_url,
            settings.db_pool_size,
            connect_timeout=settings.db_connect_timeout,
            pool_timeout=settings.db_pool_timeout,
        )
        feed = ChangeFeed(asyncpg_dsn(database_url), settings.db_connect_timeout)
        tokens = TokenStore(engine, on_commit=feed.dispatch)
        roles = Roles(settings.admin_group, settings.rag_admin_group, settings.user_group, settings.api_group)
        oidc = None
        if settings.oidc_enabled:
            oidc = OIDCVerifier(
                settings.oidc_issuer,
                settings.oidc_audience or settings.oidc_client_id,
                settings.oidc_groups_claim,
                settings.oidc_username_claims,
                leeway_seconds=settings.oidc_leeway_seconds,
            )
        users = UserStore(engine, on_commit=feed.dispatch)
        authenticator = Authenticator(
            tokens, roles, settings.auth_cache_seconds, oidc, users, group_refresh_hours=settings.group_refresh_hours
        )
        egress = EgressGuard.from_settings(settings)
        registry = ModelRegistry(
            engine, SecretBox(settings.encryption_key.get_secret_value()), on_commit=feed.dispatch, egress=egress
        )
        routes = RouteTable(registry, feed_connected=feed.connected.is_set)
        feed.subscribe(authenticator.on_change)
        feed.subscribe(routes.on_change)
        meter = UsageMeter(
            engine,
            settings.usage_flush_seconds,
            settings.usage_batch_size,
            spill_dir=settings.data_dir.resolve() / "usage-spill",
            max_buffered=settings.usage_buffer_records,
            max_spill_bytes=settings.usage_spill_bytes,
        )
        limits = LimitStore(engine, on_commit=feed.dispatch)
        feed.subscribe(limits.on_change)
        limiter = Limiter(engine)
        configuration = ConfigurationService(
            ConfigurationStore(engine, on_commit=feed.dispatch),
            pins_from(settings),
            feed_connected=feed.connected.is_set,
        )
        feed.subscribe(configuration.on_change)
        passthrough = Passthrough(settings.upstream_connect_timeout, settings.upstream_read_timeout)
        rag = RagServices.build(settings, database_url, engine, routes, egress, authenticator.principal_for_user)
        gateway = Gateway(
            authenticator=authenticator,
            routes=routes,
            passthrough=passthrough,
            litellm=LiteLLMBackend(settings.upstream_read_timeout),
            meter=meter,
            limits=limits,
            limiter=limiter,
            max_body=settings.max_request_bytes,
            default_max_tokens=settings.limit_default_max_tokens,
            rag=rag.chat,
        )
        mcp = McpService(
            McpServerStore(engine, SecretBox(settings.encryption_key.get_secret_value()), on_commit=feed.dispatch),
            egress,
            HostedServers(settings.data_dir.resolve(), settings.mcp_connect_timeout),
            connect_timeout=settings.mcp_connect_timeout,
            call_timeout=settings.mcp_call_timeout,
            cache_seconds=settings.mcp_tools_cache_seconds,
            max_output_chars=settings.mcp_max_output_chars,
        )
        feed.subscribe(mcp.on_change)
        oauth = None
        if settings.oidc_enabled:
            secret = settings.oidc_client_secret.get_secret_value()
            oauth = oauth_client(settings.oidc_issuer, settings.oidc_client_id, secret, settings.oidc_scopes)
        prompts = PromptTemplateService(engine)
        assistants = AssistantService(engine, prompts, registry, rag.repositories)
        local_models = LocalDeployer.from_settings(settings)
        # Workflows run the local deployer this graph opens and closes (it supervises the model servers), others
        # from the factory; schedules enable and disable models through the lifecycle.
        lifecycle = LifecycleServices.build(
            settings, engine, registry, egress, rag.worker.app, rag.worker.on_tick, opened={"local": local_models}
        )
        scheduler = Scheduler(engine, lifecycle.actions)
        rag.worker.on_tick.append(scheduler.run_tick)
        chat_gateway = GatewayClient(gateway)
        chat_store = ChatStore(engine)
        context = ContextServices.build(settings, engine, chat_store, registry, routes, chat_gateway, rag.runner.parser)
        personas = Personas(prompts, assistants)
        approvals = ToolApprovals(engine)  # safe-mode tool calls waiting for a decision, in the database
        feed.subscribe(approvals.on_change)
        chat_turns = ChatTurns(
            chat_store,
            TurnDatabase(asyncpg_dsn(database_url), settings.db_pool_size, settings.db_connect_timeout),
            chat_gateway,
            history_buffer=settings.chat_history_buffer,
            flush_seconds=settings.chat_flush_seconds,
            default_model=lambda: settings.textgen_model_id if settings.local_models else None,
            context=context.prompt,
            personas=personas,
            tools=ToolLoop(mcp, configuration.enabled, approvals, approval_timeout=settings.chat_tool_approval_timeout),
        )
        return cls(
            settings, engine, feed, tokens, authenticator, registry, routes, meter, passthrough, gateway, limits, limiter,
            rag, egress, SessionStore(engine), configuration, prompts, assistants, mcp, local_models,
            ScheduleStore(engine), scheduler, chat_gateway, ChatSessions(chat_store, routes, rag.repositories, personas),
            chat_turns, context, lifecycle, oauth,
        )  # fmt: skip

    async def start(self) -> None:
        """Starts every part; a failure stops what had started, then propagates (see the module's docstring)."""
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.engine.dispose)  # last out: the meter's final flush still writes
            if self.authenticator.oidc is not None:
                stack.push_async_callback(self.authenticator.oidc.aclose)
            stack.push_async_callback(self.feed.stop)
            await self.feed.start()
            stack.push_async_callback(self.passthrough.stop)
            await self.passthrough.start(self.egress)
            stack.push_async_callback(self.rag.stop)
            await self.rag.start()  # opens the procrastinate app the lifecycle's worker shares
            stack.push_async_callback(self.mcp.stop)  # the hosted (stdio) MCP servers' processes
            # Its servers stop with this process (their records stay): the next backend process starts them again.
            stack.push_async_callback(self.local_models.aclose)
            await self.local_models.open()
            stack.push_async_callback(self.lifecycle.stop)  # workflows stop before the deployers they use
            await self.lifecycle.start()
            # Started last, so stopped first: its final write (or, with the database away, its spill to disk)
            # waits on no slower stop.
            stack.push_async_callback(self.meter.stop)
            self.meter.start()
            stack.push_async_callback(self.chat_turns.stop)  # first out: answers in flight are saved, then metered
            await self.chat_turns.start_pool()
            self._running = stack.pop_all()

    async def stop(self) -> None:
        """Stops every part in the reverse order of their start; the engine last."""
        await self._running.aclose()


@dataclass
class RagServices:
    embedder: Embedder
    sources: Sources
    repositories: RepositoryService
    documents: DocumentService
    jobs: JobService
    runner: IngestRunner
    worker: RagWorker
    search: SearchService
    chat: ChatRag
    pipelines: PipelineService
    egress: EgressGuard
    _running: AsyncExitStack = field(default_factory=AsyncExitStack, init=False, repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        database_url: str,
        engine: AsyncEngine,
        routes: RouteTable,
        egress: EgressGuard | None = None,
        owners: OwnerLookup | None = None,  # a user's current principal: what pipelines run as (None: none run)
    ) -> RagServices:
        egress = egress or EgressGuard.from_settings(settings)
        embedder = Embedder(
            routes, settings.rag_embed_batch, settings.rag_embed_parallel, settings.upstream_read_timeout
        )
        sources = Sources(
            settings.rag_ingest_roots,
            settings.rag_max_file_bytes,
            settings.aws_endpoint_url,
            settings.aws_region,
            forbidden=[settings.data_dir],
            egress=egress,
        )
        box = SecretBox(settings.encryption_key.get_secret_value())
        repositories = RepositoryService(engine, database_url, box, embedder, egress=egress)
        parser = ParserPool(
            settings.rag_parse_workers, settings.rag_parse_timeout_seconds, settings.rag_parse_memory_bytes
        )
        runner = IngestRunner(
            engine,
            repositories,
            embedder,
            sources,
            settings.rag_documents_parallel,
            settings.rag_max_file_bytes,
            parser,
        )
        worker = RagWorker(
            database_url,
            engine,
            runner,
            run_worker=settings.rag_worker,
            concurrency=settings.rag_worker_jobs,
            heartbeat_seconds=settings.rag_heartbeat_seconds,
            stalled_seconds=settings.rag_stalled_seconds,
            connect_timeout=settings.db_connect_timeout,
        )
        jobs = JobService(engine, repositories, sources, settings.rag_user_quota_bytes)
        jobs.dispatch = worker.defer
        reranker = Reranker(settings.rag_reranker_url, egress) if settings.rag_reranker_url else None
        search = SearchService(
            repositories,
            embedder,
            reranker,
            settings.rag_hybrid_weight,
            settings.rag_rerank_candidates,
            PageFusion(
                decay=settings.rag_page_decay,
                per_page=settings.rag_per_page,
                page_vector=settings.rag_page_vector,
                page_length=settings.rag_page_length,
            ),
        )
        chat = ChatRag(search, settings.rag_max_context_chars)
        documents = DocumentService(engine, repositories)
        pipelines = PipelineService(
            engine,
            asyncpg_dsn(database_url),
            repositories,
            jobs,
            sources,
            run_watchers=settings.rag_worker,
            poll_seconds=settings.rag_poll_seconds,
            owners=owners,
        )
        worker.on_tick.append(pipelines.run_due_schedules)
        return cls(embedder, sources, repositories, documents, jobs, runner, worker, search, chat, pipelines, egress)

    async def start(self) -> None:
        """Starts the RAG parts; a failure stops what had started, then propagates (as ``Services.start``)."""
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.embedder.stop)
            await self.embedder.start(self.egress)
            stack.push_async_callback(self.repositories.close)  # the vector stores' clients, opened on use
            stack.push_async_callback(self.runner.close)  # the parser processes, started on first use
            stack.push_async_callback(self.worker.stop)
            await self.worker.start()
            stack.push_async_callback(self.pipelines.stop)
            await self.pipelines.start()
            await self.search.start()  # checks the reranker's address against the egress guard
            self._running = stack.pop_all()

    async def stop(self) -> None:
        await self._running.aclose()
