"""Softmax (Boltzmann) action selection for bandits and reinforcement learning.

Policies (:class:`SoftmaxPolicy`, :class:`EpsilonGreedy`, :class:`Greedy`,
:class:`UCB`, :class:`GradientBandit`) act on many independent runs at once;
:func:`testbed` and :func:`compare_policies` reproduce the 10-armed testbed of
Sutton & Barto; :func:`action_probabilities` and :func:`sample_actions` are the
stable softmax probabilities and exact categorical sampling underneath;
:func:`plot_results` draws the learning curves (needs matplotlib, the
``plot`` extra).

Examples
--------
>>> from softmax.bandits import EpsilonGreedy, SoftmaxPolicy, compare_policies
>>> results = compare_policies(
...     [SoftmaxPolicy(temperature=0.1), EpsilonGreedy(epsilon=0.1)],
...     n_runs=100, n_steps=200, random_state=0)
>>> list(results)
['softmax tau=0.1', 'epsilon-greedy eps=0.1']
"""

from __future__ import annotations

from softmax.bandits.plotting import plot_results
from softmax.bandits.policies import (
    UCB,
    EpsilonGreedy,
    GradientBandit,
    Greedy,
    Policy,
    SoftmaxPolicy,
)
from softmax.bandits.sampling import action_probabilities, sample_actions
from softmax.bandits.schedules import Constant, ExponentialDecay, LinearDecay
from softmax.bandits.testbed import TestbedResult, compare_policies, testbed

__all__ = [
    "UCB",
    "Constant",
    "EpsilonGreedy",
    "ExponentialDecay",
    "GradientBandit",
    "Greedy",
    "LinearDecay",
    "Policy",
    "SoftmaxPolicy",
    "TestbedResult",
    "action_probabilities",
    "compare_policies",
    "plot_results",
    "sample_actions",
    "testbed",
]
