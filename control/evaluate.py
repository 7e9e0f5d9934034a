"""``python -m control.evaluate checkpoint=<run dir or .ckpt>``: evaluation episodes of a saved
agent, with an optional video of the first episode.

Video needs MuJoCo's offscreen rendering: set ``MUJOCO_GL=egl`` (with a GPU) or
``MUJOCO_GL=osmesa`` (CPU, needs the OSMesa library) before running.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from control.agent import ActorCritic, build_agent, resolve_device
from control.checkpoint import load_checkpoint
from control.envs import ActionScaler, as_tensor, check_spaces, make_vector_env
from control.evaluation import EvalResult, evaluate
from gempo.errors import GempoError
from gempo.runs import hydra_main, run_directory


def load_agent(checkpoint: str, device: torch.device) -> tuple[ActorCritic, DictConfig, int]:
    """The agent saved in ``checkpoint``, its training config and env step count."""
    state = load_checkpoint(checkpoint)
    cfg = OmegaConf.create(state["config"])
    env = gym.make(cfg.env.id)
    spaces = check_spaces(cfg.env.id, env.observation_space, env.action_space)
    env.close()
    agent = build_agent(cfg, spaces.obs_dim, spaces.act_dim, device)
    agent.load_checkpoint_state(state["agent"])
    agent.eval()
    return agent, cfg, int(state["env_step"])


def record_episode(
    agent: ActorCritic, cfg: DictConfig, seed: int, device: torch.device
) -> list[np.ndarray]:
    """RGB frames ``(height, width, 3)`` of one evaluation episode rendered offscreen."""
    kwargs = OmegaConf.to_container(cfg.env.kwargs) if cfg.env.get("kwargs") else {}
    try:
        env = gym.make(cfg.env.id, render_mode="rgb_array", **kwargs)
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
    except Exception as err:  # noqa: BLE001 - rendering back-ends fail in many ways
        raise GempoError(
            f"video=true: offscreen rendering failed ({type(err).__name__}: {err}); "
            "set MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa (CPU)"
        ) from None
    scaler = ActionScaler(env.action_space.low, env.action_space.high)
    done = False
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        while not done:
            action = agent.act(as_tensor(obs[None], device), "eval")[0].cpu().numpy()
            obs, _, terminated, truncated, _ = env.step(scaler.to_env(action))
            frames.append(env.render())
            done = terminated or truncated
    env.close()
    return frames


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """Write frames as a GIF (always available) or an MP4 (needs imageio-ffmpeg)."""
    try:
        if path.suffix == ".gif":
            imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
        else:
            imageio.mimsave(path, frames, fps=fps)
    except (ImportError, ValueError, RuntimeError) as err:
        raise GempoError(f"video_path={path}: cannot write it ({err}); use a .gif path") from None
    return path


def run(cfg: DictConfig, output_dir: Path) -> EvalResult:
    """Evaluate the checkpoint; write the video when asked. Prints the summary line."""
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise GempoError("checkpoint is required: checkpoint=<run directory or .ckpt file>")
    device = resolve_device(cfg.device)
    agent, train_cfg, env_step = load_agent(cfg.checkpoint, device)
    if int(cfg.episodes) < 1:
        raise GempoError(f"episodes must be >= 1, got {cfg.episodes}")
    envs = make_vector_env(train_cfg.env.id, int(cfg.episodes))
    spaces = check_spaces(train_cfg.env.id, envs.single_observation_space, envs.single_action_space)
    result = evaluate(agent, envs, ActionScaler(spaces.low, spaces.high), int(cfg.seed), device)
    envs.close()
    print(
        f"{train_cfg.env.id} ({train_cfg.agent.name}, {env_step} env steps): return "
        f"{result.return_mean:.2f} ± {result.return_std:.2f} over {cfg.episodes} episodes"
    )
    if cfg.video:
        path = Path(cfg.video_path)
        path = path if path.is_absolute() else output_dir / path
        frames = record_episode(agent, train_cfg, int(cfg.seed), device)
        print(f"video: {write_video(frames, path, int(cfg.video_fps))}")
    return result


@hydra_main("control_evaluate")
def main(cfg: DictConfig) -> float:
    """``python -m control.evaluate``: see the module docstring."""
    return run(cfg, run_directory()).return_mean


if __name__ == "__main__":
    main()
